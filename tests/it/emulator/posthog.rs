//! PostHog: see the module list in `emulator`.
