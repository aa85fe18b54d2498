"""Job handlers of the pull-through cache: none yet. Prefetching (`dockyard cache warm`) is meant to
run here, through `cache.ProxyCache`, as a job of its own."""
