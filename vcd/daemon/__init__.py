"""The daemon: SQLite job queue, watcher, scheduler, worker pool, metrics, logs, config."""
