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
