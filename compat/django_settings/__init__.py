"""Settings for Django's own test suite (``runtests.py --settings``), one
module per engine.

``COMPAT_DJANGO_VARIANT`` picks the runner: ``vanilla`` (Django's
``DiscoverRunner``, the default) or ``testbed`` (``TestbedRunner``), both
recording outcomes to the file ``COMPAT_DJANGO_RESULTS`` names.
"""
