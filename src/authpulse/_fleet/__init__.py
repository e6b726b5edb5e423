"""Many sessions at once: ``SessionManager``, its worker, planner and inspector."""
