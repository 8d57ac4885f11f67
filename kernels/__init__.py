"""fastloss kernels: the element math and the compiled kernels (no dispatch, no CuPy)."""
