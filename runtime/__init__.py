"""runtime: a daemonless OCI container engine. It never imports `composer`."""
