"""``import epynn.initialize`` compatibility.

EpyNN's module copies a ``settings.py`` into the working directory and
replaces ``sys.excepthook`` on import. The facade's module does nothing: it
exists so that scripts which import it keep working.
"""
