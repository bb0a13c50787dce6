//! Headless Chromium drives the analyst path.
