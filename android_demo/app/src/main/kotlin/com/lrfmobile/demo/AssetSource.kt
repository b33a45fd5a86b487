package com.lrfmobile.demo

import android.content.res.AssetManager
import com.lrfmobile.core.BundleSource
import java.io.InputStream

/**
 * A bundle shipped in the APK's assets under [root] (app/src/main/assets/<root>/). Only the
 * folder is fixed by the app; every file inside is named by the bundle's manifest.json.
 */
class AssetSource(private val assets: AssetManager, private val root: String) : BundleSource {
    override val description: String get() = "assets/$root"

    // AssetManager.open throws FileNotFoundException for a missing file, as BundleSource requires.
    override fun open(relPath: String): InputStream = assets.open("$root/$relPath")
}
