//! Close: see the module list in `emulator`.
