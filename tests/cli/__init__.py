"""The `sansio-broker` command line, against SimpleBroker's `broker`."""
