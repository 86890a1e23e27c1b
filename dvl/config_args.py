"""Parsing of a config file's argument string: ``file.py:a=1,b=x,runlocal``."""

import ml_collections


def _convert(value: str, default):
  if isinstance(default, bool):
    if value.lower() in ('1', 'true', 'yes', ''):
      return True
    if value.lower() in ('0', 'false', 'no'):
      return False
    raise ValueError(f'expected a boolean, got {value!r}')
  if default is None:
    return value
  return type(default)(value)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses ``'a=1,b=x,flag'`` against ``defaults``.

  Each key must be one of ``defaults`` and its value is converted to the
  default's type; a bare word is a boolean switched on. An unknown key is
  an error listing the valid ones.
  """
  out = dict(defaults)
  for token in filter(None, (arg or '').split(',')):
    key, sep, value = token.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ValueError(f'unknown config argument {key!r}; valid arguments: '
                       f'{", ".join(sorted(defaults))}')
    if not sep and not isinstance(defaults[key], bool):
      raise ValueError(f'config argument {key!r} needs a value: {key}=...')
    try:
      out[key] = _convert(value.strip(), defaults[key])
    except ValueError as e:
      raise ValueError(f'config argument {key}={value!r}: {e}') from None
  return ml_collections.ConfigDict(out)


def sibling_experiment(here: str, name: str):
  """The module of the config file ``<name>.py`` in the folder of ``here``
  (a config file's ``__file__``), loaded from its path: config files are
  not a package. Raises ValueError naming the files there when there is
  none."""
  import importlib.util
  from pathlib import Path
  path = Path(here).with_name(f'{name}.py')
  if not path.is_file():
    choices = sorted(p.stem for p in path.parent.glob('*.py'))
    raise ValueError(f'unknown experiment {name!r}; choose one of: '
                     f'{", ".join(choices)}')
  spec = importlib.util.spec_from_file_location(f'{name}_experiment', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
