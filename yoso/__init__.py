"""yoso: command-line entry point of the ReL-PSP / YOSO project (``yoso --help``)."""
