"""The command line (``ebseg-lite``): one module per sub-command; :mod:`ebseg_lite.cli.main` ties them."""
