"""Which datasets dvl reads, and how each becomes a prepared TFDS builder.

Every dataset is read through TFDS, from one of three kinds of builder:

  * ``shapes``: the procedural dataset of :mod:`dvl.data.shapes`, generated
    into the data dir on first use.
  * ``npz_folder`` and the named folders ``cifar10_local``, ``mnist_local`` and
    ``pets_local``: a folder of numpy archives imported by
    :mod:`dvl.data.npz_folder`. The named folders default to
    ``../shared/data/<folder>`` next to the repository (``$DVL_SHARED_DATA``
    moves that directory).
  * any name of the TFDS catalog (``cifar10``, ``mnist``, ``imagenet2012``,
    ``oxford_iiit_pet``, ...), optionally with ``/config`` or ``:version``.
    These are never downloaded from here; they must already be prepared in
    the data dir, or, for datasets with manual downloads such as
    ``imagenet2012``, their archives must sit in the manual dir.

The data dir is ``config.input.data_dir``, else ``$TFDS_DATA_DIR``, else
``~/.cache/dvl/tfds``.
"""

import difflib
import os
from pathlib import Path

import tensorflow_datasets as tfds

from dvl.data import npz_folder
from dvl.data import shapes

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where the named local folders live: $DVL_SHARED_DATA, else ../shared/data.
SHARED_DATA = Path(os.environ.get('DVL_SHARED_DATA')
                   or REPO_ROOT.parent / 'shared' / 'data')
DEFAULT_DATA_DIR = '~/.cache/dvl/tfds'

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
# Local folders of numpy archives: dataset name -> (folder, class names).
LOCAL_FOLDERS = {
    'cifar10_local': ('cifar10', CIFAR10_CLASSES),
    'mnist_local': ('mnist', tuple(str(d) for d in range(10))),
    'pets_local': ('oxford_pets_3class',
                   ('Abyssinian', 'american_bulldog', 'Bengal')),
}
DVL_DATASETS = ('shapes', 'npz_folder', *LOCAL_FOLDERS)

_PREPARE = dict(
    download_config=tfds.download.DownloadConfig(
        try_download_gcs=False,
        compute_stats=tfds.download.ComputeStatsMode.SKIP))


def data_dir(cfg):
  """The TFDS data dir: the config's, else $TFDS_DATA_DIR, else the default."""
  chosen = cfg.data_dir or os.environ.get('TFDS_DATA_DIR') or DEFAULT_DATA_DIR
  return str(Path(chosen).expanduser())


def _catalog_names():
  return tfds.list_builders(with_community_datasets=False)


def check_name(name):
  """Raises a ValueError naming the valid choices when ``name`` is unknown."""
  base = name.split('/')[0].split(':')[0]
  if name in DVL_DATASETS or base in _catalog_names():
    return
  close = difflib.get_close_matches(base, [*DVL_DATASETS, *_catalog_names()])
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  raise ValueError(
      f'unknown dataset {name!r}.{hint} Choose one of dvl\'s datasets: '
      f'{", ".join(DVL_DATASETS)}; or a TFDS catalog name such as cifar10, '
      f'mnist, imagenet2012 or oxford_iiit_pet (see tfds.list_builders()).')


def _folder(cfg):
  """The numpy archive folder of ``npz_folder`` and the named local folders."""
  if cfg.path:
    folder = Path(cfg.path).expanduser()
  elif cfg.dataset in LOCAL_FOLDERS:
    folder = SHARED_DATA / LOCAL_FOLDERS[cfg.dataset][0]
  else:
    raise ValueError('dataset npz_folder needs config.input.path, the folder'
                     ' holding <split>.npz files')
  if not folder.is_dir():
    raise FileNotFoundError(
        f'dataset {cfg.dataset!r}: no folder of numpy archives at '
        f'{str(folder)!r}. Pass the folder holding <split>.npz files as '
        'config.input.path.')
  return folder


def _local_builder(cfg):
  """A prepared shapes or numpy-folder builder (prepares it on first use)."""
  if cfg.dataset == 'shapes':
    config = shapes.ShapesConfig.make(**cfg.shapes)
    builder = shapes.Shapes(config=config, data_dir=data_dir(cfg))
  else:
    names = cfg.class_names or LOCAL_FOLDERS.get(cfg.dataset, ('', ()))[1]
    config = npz_folder.NpzFolderConfig.make(_folder(cfg), names)
    builder = npz_folder.NpzFolder(config=config, data_dir=data_dir(cfg))
  if not builder.is_prepared():
    builder.download_and_prepare(**_PREPARE)
  return builder


def _missing_catalog_data(cfg, builder):
  """The error for a catalog dataset that is not prepared in the data dir."""
  manual = ''
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    manual = (f' It needs a manual download: put its archives in '
              f'{_manual_dir(cfg)!r} (config.input.manual_dir) and dvl '
              'prepares it offline. TFDS says: '
              f'{" ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())}')
  return FileNotFoundError(
      f'TFDS dataset {cfg.dataset!r} is not prepared in data_dir '
      f'{data_dir(cfg)!r} (looked in {builder.data_dir!r}), and this machine '
      'does not download. Prepare it where there is network with '
      f'`tfds build {cfg.dataset} --data_dir=DIR` and copy DIR here, then set '
      f'config.input.data_dir or $TFDS_DATA_DIR to it.{manual}')


def _manual_dir(cfg):
  return str(Path(cfg.manual_dir or Path(data_dir(cfg), 'downloads', 'manual'))
             .expanduser())


def _catalog_builder(cfg):
  """A TFDS catalog builder; prepared offline from manual downloads only."""
  builder = tfds.builder(cfg.dataset, data_dir=data_dir(cfg))
  manual_dir = Path(_manual_dir(cfg))
  if (builder.MANUAL_DOWNLOAD_INSTRUCTIONS and not builder.is_prepared()
      and manual_dir.is_dir() and any(manual_dir.iterdir())):
    config = tfds.download.DownloadConfig(
        manual_dir=str(manual_dir), try_download_gcs=False,
        compute_stats=tfds.download.ComputeStatsMode.SKIP)
    try:
      builder.download_and_prepare(download_config=config)
    except ModuleNotFoundError as error:
      raise ModuleNotFoundError(
          f'preparing TFDS dataset {cfg.dataset!r} needs the package '
          f'{error.name!r}: pip install {error.name}') from error
  return builder


def load_builder(cfg):
  """The prepared TFDS builder for ``cfg.dataset`` (a ``config.input``)."""
  check_name(cfg.dataset)
  if cfg.dataset in DVL_DATASETS:
    return _local_builder(cfg)
  return _catalog_builder(cfg)


def as_dataset(cfg, builder, split, **kwargs):
  """``builder.as_dataset`` with a clear error when the data is missing."""
  try:
    return builder.as_dataset(split=split, **kwargs)
  except AssertionError as error:  # TFDS's report of an unprepared dataset.
    if 'could not find data' in str(error).lower():
      raise _missing_catalog_data(cfg, builder) from error
    raise
