package com.lrfmobile.demo

import ai.onnxruntime.OnnxJavaType
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import com.lrfmobile.core.BundleSource
import com.lrfmobile.core.DType
import com.lrfmobile.core.Engine
import com.lrfmobile.core.GraphSession
import com.lrfmobile.core.GraphSpec
import com.lrfmobile.core.Tensor
import java.nio.ByteBuffer
import java.nio.FloatBuffer
import java.nio.IntBuffer

/**
 * ONNX Runtime for Android behind the core's [Engine] interface. Graph files are read from the
 * bundle by the manifest's `file` entry; tensors are converted by dtype. The core's
 * [com.lrfmobile.core.Generator] validates shapes/dtypes before and after every call.
 */
class OrtEngine(private val source: BundleSource, private val threads: Int) : Engine {
    private val env: OrtEnvironment = OrtEnvironment.getEnvironment()

    override fun open(graph: GraphSpec): GraphSession {
        require(graph.format == "onnx") {
            "graph ${graph.name} has format '${graph.format}'; this app runs ONNX bundles (lrf-export --target onnx)"
        }
        val options = OrtSession.SessionOptions()
        options.setIntraOpNumThreads(threads)
        options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT)
        val session = env.createSession(source.readBytes(graph.file), options)
        return OrtGraphSession(env, session, options)
    }
}

private class OrtGraphSession(
    private val env: OrtEnvironment,
    private val session: OrtSession,
    private val options: OrtSession.SessionOptions
) : GraphSession {

    override fun run(inputs: Map<String, Tensor>): Map<String, Tensor> {
        val feeds = LinkedHashMap<String, OnnxTensor>()
        try {
            for ((name, t) in inputs) feeds[name] = toOnnx(t)
            session.run(feeds).use { result ->
                val out = LinkedHashMap<String, Tensor>()
                for (entry in result) {
                    val value = entry.value
                    if (value is OnnxTensor) out[entry.key] = fromOnnx(value)
                }
                return out
            }
        } finally {
            for (t in feeds.values) t.close()
        }
    }

    private fun toOnnx(t: Tensor): OnnxTensor {
        val shape = LongArray(t.shape.size) { t.shape[it].toLong() }
        return when (t.dtype) {
            DType.FLOAT32 -> OnnxTensor.createTensor(env, FloatBuffer.wrap(t.floats!!), shape)
            DType.INT32 -> OnnxTensor.createTensor(env, IntBuffer.wrap(t.ints!!), shape)
            DType.UINT8 -> OnnxTensor.createTensor(env, ByteBuffer.wrap(t.bytes!!), shape, OnnxJavaType.UINT8)
        }
    }

    private fun fromOnnx(v: OnnxTensor): Tensor {
        val shape = IntArray(v.info.shape.size) { v.info.shape[it].toInt() }
        return when (v.info.type) {
            OnnxJavaType.FLOAT -> {
                val buf = v.floatBuffer
                Tensor.f32(shape, FloatArray(buf.remaining()).also { buf.get(it) })
            }
            OnnxJavaType.INT32 -> {
                val buf = v.intBuffer
                Tensor.i32(shape, IntArray(buf.remaining()).also { buf.get(it) })
            }
            OnnxJavaType.UINT8 -> {
                val buf = v.byteBuffer
                Tensor.u8(shape, ByteArray(buf.remaining()).also { buf.get(it) })
            }
            else -> throw IllegalStateException("ONNX output of type ${v.info.type} is not float32, int32 or uint8")
        }
    }

    override fun close() {
        session.close()
        options.close()
    }
}
