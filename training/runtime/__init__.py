"""The process a rank runs in: set-up, distributed context, preemption, the watchdog, progress."""
