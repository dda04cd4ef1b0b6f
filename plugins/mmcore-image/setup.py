"""Builds the optional Pillow-exact windowed resampler; without a C compiler the plugin uses Pillow."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mmcore_image._resample",
            ["mmcore_image/_resample.c"],
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        )
    ]
)
