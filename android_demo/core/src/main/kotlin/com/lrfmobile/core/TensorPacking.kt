package com.lrfmobile.core

import java.nio.Buffer
import java.nio.ByteBuffer
import java.nio.FloatBuffer
import java.nio.IntBuffer

/**
 * [Tensor] <-> what an inference engine's Java API takes and returns: a flat NIO buffer, a long
 * shape and an element-type name (ONNX Runtime's `OnnxJavaType` names). The app's OrtEngine is a
 * thin adapter over this, so every conversion and check here runs in the JVM tests.
 */
object TensorPacking {
    /** A tensor as an engine takes it: a buffer at position 0 holding exactly its values. */
    class Packed(val dtype: DType, val shape: LongArray, val buffer: Buffer)

    /** One input or output as an engine describes it when a graph is opened (-1 = dynamic). */
    class EngineTensorInfo(val name: String, val typeName: String, val shape: LongArray)

    /** Engine element-type names (OnnxJavaType) for the dtypes a bundle may use. */
    private val ENGINE_TYPES = mapOf("FLOAT" to DType.FLOAT32, "INT32" to DType.INT32, "UINT8" to DType.UINT8)

    fun pack(t: Tensor): Packed {
        val shape = LongArray(t.shape.size) { t.shape[it].toLong() }
        return when (t.dtype) {
            DType.FLOAT32 -> Packed(t.dtype, shape, FloatBuffer.wrap(t.floats!!))
            DType.INT32 -> Packed(t.dtype, shape, IntBuffer.wrap(t.ints!!))
            DType.UINT8 -> Packed(t.dtype, shape, ByteBuffer.wrap(t.bytes!!))
        }
    }

    /** The dtype for an engine type name; [what] names the tensor in the message. */
    fun dtypeOf(typeName: String, what: String): DType = ENGINE_TYPES[typeName]
        ?: throw IllegalArgumentException("$what has element type $typeName; a bundle graph uses only " +
            "float32, int32 and uint8: re-export the bundle")

    /**
     * An engine's output as a [Tensor]: the shape must be non-negative, fit in an Int and match
     * the buffer's remaining values, and the buffer's kind must be the type's.
     */
    fun unpack(typeName: String, shape: LongArray, buffer: Buffer, what: String): Tensor {
        val dtype = dtypeOf(typeName, what)
        val dims = IntArray(shape.size)
        var count = 1L
        for (k in shape.indices) {
            val d = shape[k]
            require(d >= 0 && d <= Int.MAX_VALUE) { "$what has shape ${shape.toList()}: dimension $k is out of range" }
            dims[k] = d.toInt()
            count *= d
            require(count <= Int.MAX_VALUE) { "$what has shape ${shape.toList()}: too many values" }
        }
        require(buffer.remaining().toLong() == count) {
            "$what has shape ${shape.toList()} ($count values) but the engine returned ${buffer.remaining()} values"
        }
        // duplicate(): reading must not move the engine's buffer position
        return when (dtype) {
            DType.FLOAT32 -> Tensor.f32(dims, FloatArray(count.toInt()).also { bufferAs<FloatBuffer>(buffer, what, typeName).duplicate().get(it) })
            DType.INT32 -> Tensor.i32(dims, IntArray(count.toInt()).also { bufferAs<IntBuffer>(buffer, what, typeName).duplicate().get(it) })
            DType.UINT8 -> Tensor.u8(dims, ByteArray(count.toInt()).also { bufferAs<ByteBuffer>(buffer, what, typeName).duplicate().get(it) })
        }
    }

    private inline fun <reified B : Buffer> bufferAs(buffer: Buffer, what: String, typeName: String): B = buffer as? B
        ?: throw IllegalArgumentException("$what: a $typeName tensor came with a ${buffer.javaClass.simpleName}")

    /**
     * Checks a graph as the engine opened it against its manifest entry (runtime/BUNDLE.md 2.2):
     * the same input names (outputs may be more), dtypes, ranks and static sizes. Throws one
     * line naming the mismatch.
     */
    fun checkSignature(graph: GraphSpec, inputs: List<EngineTensorInfo>, outputs: List<EngineTensorInfo>) {
        checkSide(graph, "input", graph.inputs, inputs)
        checkSide(graph, "output", graph.outputs, outputs)
    }

    private fun checkSide(graph: GraphSpec, role: String, specs: List<TensorSpec>, found: List<EngineTensorInfo>) {
        val byName = found.associateBy { it.name }
        val want = specs.map { it.name }.toSet()
        val extra = found.map { it.name }.filter { it !in want }
        for (spec in specs) {
            val info = byName[spec.name] ?: throw IllegalArgumentException("graph ${graph.name} (${graph.file}): the file " +
                "has no $role '${spec.name}' (it has ${found.joinToString { it.name }}); the file does not match the manifest")
            val dtype = dtypeOf(info.typeName, "graph ${graph.name}: $role '${spec.name}'")
            // a dim the file fixes must be the manifest's; a dynamic manifest input must be dynamic
            // in the file too (as runtime/backend_onnxruntime.py check_io); -1: unknown in the file
            val same = dtype == spec.dtype && info.shape.size == spec.shape.size && spec.shape.indices.all { k ->
                val have = info.shape[k]
                val want = spec.shape[k]
                have < 0 || (if (want >= 0) have == want.toLong() else role != "input")
            }
            if (!same) throw IllegalArgumentException("graph ${graph.name} (${graph.file}): $role '${spec.name}' is " +
                "${dtype.jsonName} ${info.shape.map { if (it < 0) "?" else it.toString() }} in the file, manifest says " +
                "${spec.dtype.jsonName} ${spec.describe()}; the file does not match the manifest")
        }
        if (role == "input" && extra.isNotEmpty()) throw IllegalArgumentException("graph ${graph.name} (${graph.file}): " +
            "the file has input${if (extra.size > 1) "s" else ""} ${extra.joinToString()} that the manifest does not list")
    }
}
