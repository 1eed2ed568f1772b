"""The local stack: what runs on a developer's or operator's machine and is never deployed.

``valet dev`` (:mod:`.dev`: Azurite from :mod:`.emulator`, the development issuer :mod:`.devidp`, the
functions on :mod:`.devhost`, timers on :mod:`.ncrontab` schedules, ``local.settings.json`` read by
:mod:`.localsettings`), ``valet demo`` (:mod:`.demo`), ``valet keys`` (:mod:`.keys`), the ``valet``
command itself (:mod:`.cli`) and :mod:`.grantshell` for curl users. ``.funcignore`` leaves this folder
out of the deployment package, and nothing the app imports (``function_app.py`` and what it reaches)
imports from here; ``tests/infra/test_package.py`` checks both.
"""
