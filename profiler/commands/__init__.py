"""One module per subcommand (``HELP``, ``add_arguments``, ``run``): they parse and
dispatch; the work is done under run/, analysis/ and render/."""
