package com.lrfmobile.core

/** Element types a bundle graph may use (runtime/BUNDLE.md section 2). */
enum class DType(val jsonName: String) {
    FLOAT32("float32"), INT32("int32"), UINT8("uint8");

    companion object {
        fun fromJson(name: String, where: String): DType = values().firstOrNull { it.jsonName == name }
            ?: throw IllegalArgumentException("$where: dtype '$name' is not one of " +
                values().joinToString { it.jsonName } + "; re-export the bundle or update the app")
    }
}

/** A dense row-major tensor holding exactly one of float32, int32 or uint8 data. */
class Tensor private constructor(
    val dtype: DType,
    val shape: IntArray,
    val floats: FloatArray?,
    val ints: IntArray?,
    val bytes: ByteArray?
) {
    val size: Int get() = shape.fold(1) { a, b -> a * b }

    fun shapeList(): List<Int> = shape.toList()

    companion object {
        fun f32(shape: IntArray, data: FloatArray): Tensor {
            requireSize(shape, data.size)
            return Tensor(DType.FLOAT32, shape, data, null, null)
        }
        fun i32(shape: IntArray, data: IntArray): Tensor {
            requireSize(shape, data.size)
            return Tensor(DType.INT32, shape, null, data, null)
        }
        fun u8(shape: IntArray, data: ByteArray): Tensor {
            requireSize(shape, data.size)
            return Tensor(DType.UINT8, shape, null, null, data)
        }

        private fun requireSize(shape: IntArray, n: Int) {
            var count = 1L
            for (d in shape) count *= d
            require(shape.all { it >= 0 } && count == n.toLong()) {
                "tensor of shape ${shape.toList()} needs $count values, got $n"
            }
        }
    }
}

/**
 * One graph input or output from the manifest: what it means ([role], how readers bind it),
 * its tensor [name] in the file, dtype and shape; -1 in [shape] is a dynamic dim named in [dims].
 */
class TensorSpec(val name: String, val role: String, val dtype: DType, val shape: IntArray, val dims: List<String>) {
    /** The shape with dynamic dims shown by name, e.g. [batch, 4, 4, 4]. */
    fun describe(): String = shape.indices.joinToString(", ", "[", "]") {
        if (shape[it] < 0) dims[it] else shape[it].toString()
    }

    /**
     * Throws IllegalArgumentException saying expected vs actual dtype/shape if [t] does not fit.
     * [bound] carries the sizes of dynamic dims seen so far in this call (e.g. the batch), so
     * all tensors of one call agree.
     */
    fun check(t: Tensor, graph: String, side: String, bound: MutableMap<String, Int>) {
        if (t.dtype != dtype) {
            throw IllegalArgumentException("$graph: $side '$name' ($role) expected dtype ${dtype.jsonName}, " +
                "got ${t.dtype.jsonName} (shape ${t.shapeList()})")
        }
        if (t.shape.size != shape.size) {
            throw IllegalArgumentException("$graph: $side '$name' ($role) expected shape ${describe()}, got ${t.shapeList()}")
        }
        for (k in shape.indices) {
            val size = t.shape[k]
            if (shape[k] >= 0 && size != shape[k]) {
                throw IllegalArgumentException("$graph: $side '$name' ($role) expected shape ${describe()}, got ${t.shapeList()}")
            }
            if (shape[k] < 0) {
                if (size < 1) throw IllegalArgumentException("$graph: $side '$name' ($role) dimension '${dims[k]}' must be >= 1, got ${t.shapeList()}")
                val seen = bound[dims[k]]
                if (seen == null) bound[dims[k]] = size
                else if (seen != size) throw IllegalArgumentException(
                    "$graph: $side '$name' ($role) has ${dims[k]}=$size but another tensor has ${dims[k]}=$seen")
            }
        }
    }

    companion object {
        fun parse(o: JsonObj): TensorSpec {
            val name = o.nonEmptyString("name")
            val role = o.nonEmptyString("role")
            val dtype = DType.fromJson(o.string("dtype"), "${o.source}: ${o.path}.dtype")
            val shape = o.intList("shape").toIntArray()
            val dims = if (o.has("dims")) o.stringList("dims") else shape.indices.map { "d$it" }
            if (dims.size != shape.size) o.fail("dims", "expected ${shape.size} names (one per dim of shape), got ${dims.size}")
            if (shape.any { it < -1 || it == 0 }) o.fail("shape", "expected sizes >= 1 or -1 (dynamic), got ${shape.toList()}")
            return TensorSpec(name, role, dtype, shape, dims)
        }
    }
}

/** `graphs.denoise.window`: the window lengths K (steps per call) the file accepts; [max] null = any. */
class WindowSpec(val min: Int, val max: Int?) {
    fun allows(k: Int): Boolean = k >= min && (max == null || k <= max)
    override fun toString(): String = if (max == null) "K >= $min" else if (max == min) "K = $min" else "K in $min..$max"
}

/** One graph entry of the manifest (`graphs.<name>`). Readers bind tensors by role. */
class GraphSpec(
    val name: String,
    val file: String,
    val format: String,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    /** `denoise` only. */
    val window: WindowSpec?,
    /** ONNX only: files holding this graph's tensors (bundle-relative). */
    val externalData: List<String>,
    /** `quantization.method == "static_qdq"`: run with onnxruntime's QDQ fusion (BUNDLE.md 2.2.1). */
    val staticQdq: Boolean = false
) {
    fun input(role: String): TensorSpec = inputs.firstOrNull { it.role == role }
        ?: throw IllegalArgumentException("graph $name has no input with role '$role'")

    fun output(role: String): TensorSpec = outputs.firstOrNull { it.role == role }
        ?: throw IllegalArgumentException("graph $name has no output with role '$role'")
}
