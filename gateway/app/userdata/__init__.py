"""The user's data for operators: checks of what is asked (``checks``), one service to read, change, export
and erase it (``service``), its JSON (``render``); used by the admin API, ``gateway users`` and retention."""
