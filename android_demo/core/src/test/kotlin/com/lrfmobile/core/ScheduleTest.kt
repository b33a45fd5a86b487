package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class ScheduleTest {
    @Test
    fun timestepsAreBitExact() {
        val cases = Golden.root.obj("schedule").objList("cases")
        assertTrue(cases.size >= 6)
        for (c in cases) {
            val got = Golden.bitsOf(Schedule.timesteps(c.int("steps"), c.double("shift")))
            assertEquals("steps=${c.int("steps")} shift=${c.double("shift")}", c.stringList("timestep_bits"), got)
        }
    }

    @Test
    fun eulerTrajectoryIsBitExact() {
        val e = Golden.root.obj("euler")
        val n = e.int("n")
        val z = Prng.normal(Prng.parseSeed(e.string("latent_seed")), n)
        val v = Prng.normal(Prng.parseSeed(e.string("velocity_seed")), n)
        val ts = Schedule.timesteps(e.int("steps"), e.double("shift"))
        for (i in 0 until e.int("steps")) {
            val scaled = FloatArray(n) { v[it] * (1.0f + i) }
            Schedule.eulerStep(z, scaled, ts[i], ts[i + 1])
        }
        assertEquals(e.stringList("result_bits"), Golden.bitsOf(z))
    }

    @Test
    fun rejectsBadArguments() {
        for (steps in listOf(0, -3)) {
            try { Schedule.timesteps(steps, 1.0); fail() } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!.contains("steps must be >= 1"))
            }
        }
        for (shift in listOf(0.0, -1.0, Double.NaN, Double.POSITIVE_INFINITY)) {
            try { Schedule.timesteps(8, shift); fail() } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!.contains("shift"))
            }
        }
        try { Schedule.eulerStep(FloatArray(3), FloatArray(4), 1f, 0f); fail() } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("velocity"))
        }
    }

    @Test
    fun windowsSplitTheScheduleAsTheGraphAllows() {
        val any = WindowSpec(1, null)
        assertEquals(listOf(10), Schedule.windows(10, any, fused = true).toList())
        assertEquals((1..10).toList(), Schedule.windows(10, any, fused = false).toList())
        assertEquals(emptyList<Int>(), Schedule.windows(0, any, fused = true).toList())
        val fixed = WindowSpec(4, 4)
        assertEquals(listOf(4, 8, 12), Schedule.windows(12, fixed, fused = true).toList())
        assertEquals(listOf(4, 8, 12), Schedule.windows(12, fixed, fused = false).toList())
        // bounded windows: as long as allowed; a short tail the graph allows is kept, one it
        // does not is refused (as runtime/scheduler.py `windows`: no rebalancing)
        assertEquals(listOf(8, 16, 20), Schedule.windows(20, WindowSpec(1, 8), fused = true).toList())
        assertEquals(listOf(5, 10, 13), Schedule.windows(13, WindowSpec(3, 5), fused = true).toList())
        for ((n, w) in listOf(Pair(10, fixed), Pair(1, WindowSpec(2, 3)), Pair(11, WindowSpec(3, 5)))) {
            try { Schedule.windows(n, w, fused = true); fail("$n $w") } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!, e.message!!.contains("cannot cover $n steps"))
            }
        }
    }
}
