package com.lrfmobile.core

import org.junit.Assert.assertTrue

/** Runs [block], which must throw a [T], and returns what it threw: a test failure when it returns
 *  normally; anything else it throws propagates. (Debian's JUnit may be 4.12: no assertThrows.) */
inline fun <reified T : Throwable> thrownBy(block: () -> Unit): T {
    try {
        block()
    } catch (e: Throwable) {
        if (e is T) return e
        throw e
    }
    throw AssertionError("nothing was thrown (expected ${T::class.java.simpleName})")
}

/** [block] must throw a [T] whose message contains [fragment]. */
inline fun <reified T : Throwable> assertThrowsContaining(fragment: String, block: () -> Unit) {
    val message = thrownBy<T>(block).message ?: ""
    assertTrue("'$message' should contain '$fragment'", message.contains(fragment))
}
