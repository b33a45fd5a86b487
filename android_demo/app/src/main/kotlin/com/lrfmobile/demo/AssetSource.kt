package com.lrfmobile.demo

import android.content.res.AssetManager
import com.lrfmobile.core.BundleSource
import java.io.InputStream

/**
 * A bundle shipped in the APK's assets under [root] (app/src/main/assets/<root>/). Only the
 * folder is fixed by the app; every file inside is named by the bundle's manifest.json. Assets
 * hold no links, and AssetManager paths cannot leave the APK; the manifest's paths are checked
 * to be relative and free of ".." when it is parsed.
 */
class AssetSource(private val assets: AssetManager, private val root: String) : BundleSource {
    override val description: String get() = "assets/$root"

    // AssetManager.open throws FileNotFoundException for a missing file, as BundleSource requires.
    override fun open(relPath: String): InputStream = assets.open("$root/$relPath")

    /** Every asset file under [root]; AssetManager.list is empty for a file, non-empty for a folder. */
    override fun list(): List<String> {
        val out = ArrayList<String>()
        fun walk(rel: String) {
            val children = assets.list(if (rel.isEmpty()) root else "$root/$rel") ?: emptyArray()
            if (children.isEmpty() && rel.isNotEmpty()) out.add(rel)
            for (c in children) walk(if (rel.isEmpty()) c else "$rel/$c")
        }
        walk("")
        out.sort()
        return out
    }
}
