package com.lrfmobile.core

import java.io.BufferedInputStream
import java.io.BufferedOutputStream
import java.io.ByteArrayOutputStream
import java.io.Closeable
import java.io.File
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.FloatBuffer
import java.nio.IntBuffer

/**
 * A real engine for the JVM checks: every graph call goes to a child process (in the tests a
 * small onnxruntime server that tests/test_cross_language.py writes), so the Kotlin loops run on
 * a bundle's actual graphs here, where ONNX Runtime for Java is not installed. Protocol per call:
 * one JSON line {"graph": file, "inputs": [{"name", "dtype", "shape"}]} then each input's raw
 * little-endian bytes; the reply is one JSON line {"outputs": [...]} (or {"error": "..."}) then the
 * outputs' bytes. Tensors go through [TensorPacking], as OrtEngine's do.
 */
class ProcessEngine(command: List<String>, bundleDir: File) : Engine, Closeable {
    private val proc: Process = ProcessBuilder(command + bundleDir.path).redirectError(ProcessBuilder.Redirect.INHERIT).start()
    private val toChild = BufferedOutputStream(proc.outputStream)
    private val fromChild = BufferedInputStream(proc.inputStream)

    private val engineType = mapOf("float32" to "FLOAT", "int32" to "INT32", "uint8" to "UINT8")

    override fun open(graph: GraphSpec): GraphSession = object : GraphSession {
        override fun run(inputs: Map<String, Tensor>): Map<String, Tensor> = call(graph, inputs)
        override fun close() {}
    }

    @Synchronized
    private fun call(graph: GraphSpec, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val header = StringBuilder("{\"graph\":\"${graph.file}\",\"inputs\":[")
        inputs.entries.forEachIndexed { i, (name, t) ->
            if (i > 0) header.append(',')
            header.append("{\"name\":\"$name\",\"dtype\":\"${t.dtype.jsonName}\",\"shape\":${t.shape.toList()}}")
        }
        header.append("]}\n")
        toChild.write(header.toString().toByteArray(Charsets.UTF_8))
        for (t in inputs.values) toChild.write(littleEndian(TensorPacking.pack(t)))
        toChild.flush()
        val reply = JsonObj.parse(readLine(), "engine reply")
        if (reply.has("error")) throw IllegalArgumentException("${graph.name}: engine error: ${reply.string("error")}")
        val out = LinkedHashMap<String, Tensor>()
        for (o in reply.objList("outputs")) {
            val shape = o.intList("shape").map { it.toLong() }.toLongArray()
            val dtype = o.string("dtype")
            val width = if (dtype == "uint8") 1 else 4
            val bytes = readBytes((shape.fold(1L) { a, b -> a * b } * width).toInt())
            val bb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
            val buffer: java.nio.Buffer = when (dtype) {
                "float32" -> bb.asFloatBuffer()
                "int32" -> bb.asIntBuffer()
                else -> bb
            }
            out[o.string("name")] = TensorPacking.unpack(engineType[dtype] ?: dtype.toUpperCase(), shape, buffer, "output '${o.string("name")}'")
        }
        return out
    }

    private fun littleEndian(p: TensorPacking.Packed): ByteArray = when (p.dtype) {
        DType.FLOAT32 -> (p.buffer as FloatBuffer).let { fb ->
            ByteBuffer.allocate(fb.remaining() * 4).order(ByteOrder.LITTLE_ENDIAN).also { it.asFloatBuffer().put(fb.duplicate()) }.array()
        }
        DType.INT32 -> (p.buffer as IntBuffer).let { ib ->
            ByteBuffer.allocate(ib.remaining() * 4).order(ByteOrder.LITTLE_ENDIAN).also { it.asIntBuffer().put(ib.duplicate()) }.array()
        }
        DType.UINT8 -> (p.buffer as ByteBuffer).let { b -> ByteArray(b.remaining()).also { b.duplicate().get(it) } }
    }

    private fun readLine(): String {
        val buf = ByteArrayOutputStream()
        while (true) {
            val c = fromChild.read()
            if (c < 0) throw IOException("the engine process ended (exit ${if (proc.isAlive) "?" else proc.exitValue().toString()})")
            if (c == '\n'.toInt()) return String(buf.toByteArray(), Charsets.UTF_8)
            buf.write(c)
        }
    }

    private fun readBytes(n: Int): ByteArray {
        val out = ByteArray(n)
        var off = 0
        while (off < n) {
            val k = fromChild.read(out, off, n - off)
            if (k < 0) throw IOException("the engine process ended mid-reply")
            off += k
        }
        return out
    }

    override fun close() {
        toChild.close()
        proc.waitFor()
    }
}
