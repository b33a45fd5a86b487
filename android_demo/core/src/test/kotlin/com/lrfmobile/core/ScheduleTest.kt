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
}
