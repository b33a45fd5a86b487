package com.lrfmobile.demo

import ai.onnxruntime.NodeInfo
import ai.onnxruntime.OnnxJavaType
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.TensorInfo
import com.lrfmobile.core.BundleSource
import com.lrfmobile.core.DType
import com.lrfmobile.core.Engine
import com.lrfmobile.core.GraphSession
import com.lrfmobile.core.GraphSpec
import com.lrfmobile.core.Tensor
import com.lrfmobile.core.TensorPacking
import java.nio.ByteBuffer
import java.nio.FloatBuffer
import java.nio.IntBuffer

/**
 * ONNX Runtime for Android behind the core's [Engine] interface: a thin adapter over the core's
 * [TensorPacking] (conversions and signature checks, tested on the JVM). Graph files are read
 * from the bundle by the manifest's `file` entry, through the [BundleSource]'s containment
 * checks. The core's [com.lrfmobile.core.Generator] validates every call's tensors.
 */
class OrtEngine(private val source: BundleSource, private val threads: Int) : Engine {
    private val env: OrtEnvironment = OrtEnvironment.getEnvironment()

    override fun open(graph: GraphSpec): GraphSession {
        require(graph.format == "onnx") {
            "graph ${graph.name} has format '${graph.format}'; this app runs ONNX bundles (lrf-export --target onnx)"
        }
        require(graph.externalData.isEmpty()) {
            "graph ${graph.name} keeps tensors in external data files (${graph.externalData.joinToString()}); this app " +
                "loads single-file ONNX graphs: re-export the bundle without external data"
        }
        val options = OrtSession.SessionOptions()
        options.setIntraOpNumThreads(threads)
        options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT)
        // BUNDLE.md 2.2.1: weight-only graphs fold their weights to float at load (faster
        // calls); static QDQ graphs keep the fusion into int8 kernels, as the golden files were made
        options.addConfigEntry("session.disable_quant_qdq", if (graph.staticQdq) "0" else "1")
        // from bytes, never from a path: an external-data reference would make ORT open files
        // next to the graph that the bundle checks never saw, so such a graph fails here
        val session = env.createSession(source.readBytes(graph.file), options)
        try {
            TensorPacking.checkSignature(graph, infos(session.inputInfo), infos(session.outputInfo))
        } catch (e: Exception) {
            session.close()
            options.close()
            throw e
        }
        return OrtGraphSession(env, session, options)
    }

    private fun infos(nodes: Map<String, NodeInfo>): List<TensorPacking.EngineTensorInfo> = nodes.values.map { node ->
        val info = node.info as? TensorInfo
            ?: throw IllegalArgumentException("graph value '${node.name}' is not a tensor; re-export the bundle")
        TensorPacking.EngineTensorInfo(node.name, info.type.name, info.shape)
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
            for ((name, t) in inputs) feeds[name] = toOnnx(TensorPacking.pack(t))
            session.run(feeds).use { result ->
                val out = LinkedHashMap<String, Tensor>()
                for (entry in result) {
                    val v = entry.value as? OnnxTensor
                        ?: throw IllegalStateException("ONNX output '${entry.key}' is not a tensor")
                    val buffer = when (v.info.type) {
                        OnnxJavaType.FLOAT -> v.floatBuffer
                        OnnxJavaType.INT32 -> v.intBuffer
                        OnnxJavaType.UINT8 -> v.byteBuffer
                        else -> null
                    } ?: throw IllegalArgumentException(
                        "ONNX output '${entry.key}' has element type ${v.info.type}; a bundle graph uses only float32, int32 and uint8")
                    out[entry.key] = TensorPacking.unpack(v.info.type.name, v.info.shape, buffer, "ONNX output '${entry.key}'")
                }
                return out
            }
        } finally {
            for (t in feeds.values) t.close()
        }
    }

    private fun toOnnx(p: TensorPacking.Packed): OnnxTensor = when (p.dtype) {
        DType.FLOAT32 -> OnnxTensor.createTensor(env, p.buffer as FloatBuffer, p.shape)
        DType.INT32 -> OnnxTensor.createTensor(env, p.buffer as IntBuffer, p.shape)
        DType.UINT8 -> OnnxTensor.createTensor(env, p.buffer as ByteBuffer, p.shape, OnnxJavaType.UINT8)
    }

    override fun close() {
        session.close()
        options.close()
    }
}
