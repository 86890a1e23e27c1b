"""Damaged files a user hands over: Keras weight files cut short or
overwritten, and a run's config.json or import record garbled. Each is an
error naming the file, and nothing on disk changes."""

import json
import zipfile

import h5py
import numpy as np
import pytest

from dvl import errors
from dvl.convert import imported, keras_files
from dvl.train import transfer


def _keras3_weights(path):
  """A Keras 3 ``.weights.h5`` layout: layers/<name>/vars/<i>."""
  with h5py.File(path, 'w') as f:
    f.create_dataset('layers/dense/vars/0',
                     data=np.arange(50_000, dtype=np.float32).reshape(500, 100))
    f.create_dataset('layers/dense/vars/1', data=np.zeros(100, np.float32))
    f['layers/dense/vars'].attrs['name'] = 'dense'
  return path


def _keras_archive(path, weights):
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('config.json', json.dumps({'config': {'layers': []}}))
    archive.write(weights, 'model.weights.h5')
  return path


def _cut(path, keep=0.5):
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep)])
  return path


def test_whole_files_read(tmp_path):
  weights = _keras3_weights(tmp_path / 'w.weights.h5')
  assert keras_files.read(weights).format == 'keras3_weights'
  archive = _keras_archive(tmp_path / 'm.keras', weights)
  assert keras_files.read(archive).format == 'keras_archive'


def test_a_truncated_weights_h5_is_named(tmp_path):
  path = _cut(_keras3_weights(tmp_path / 'w.weights.h5'))
  with pytest.raises(ValueError, match=f'{path} cannot be read as a Keras '
                                       'weight file .*truncated or corrupt'):
    keras_files.read(path)


def test_an_h5_with_overwritten_data_is_named(tmp_path):
  path = _keras3_weights(tmp_path / 'w.weights.h5')
  data = bytearray(path.read_bytes())
  data[96:400] = bytes(304)  # the root group's object header and B-tree
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=f'{path} (cannot be read as a Keras '
                                       'weight file|is an HDF5 file but not)'):
    keras_files.read(path)


def test_a_truncated_keras_archive_is_named(tmp_path):
  weights = _keras3_weights(tmp_path / 'w.weights.h5')
  path = _cut(_keras_archive(tmp_path / 'm.keras', weights))
  with pytest.raises(ValueError, match=f'{path} is neither .* a truncated '
                                       r'\.keras download looks like this'):
    keras_files.read(path)


def test_a_keras_archive_with_a_damaged_member_is_named(tmp_path):
  weights = _keras3_weights(tmp_path / 'w.weights.h5')
  path = _keras_archive(tmp_path / 'm.keras', weights)
  data = bytearray(path.read_bytes())
  start = len(data) // 2  # inside the kernel's values
  data[start:start + 64] = bytes(64)
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=f'{path} cannot be read as a Keras '
                                       'weight file .*Bad CRC-32'):
    keras_files.read(path)


@pytest.mark.parametrize('text', ['{"model": {"name": "resn', '', '\x00' * 40])
def test_a_garbled_config_json_is_named_and_left_alone(tmp_path, text):
  (tmp_path / 'checkpoints' / '9').mkdir(parents=True)
  (tmp_path / 'config.json').write_text(text)
  before = sorted(p.name for p in tmp_path.rglob('*'))
  with pytest.raises(ValueError, match=f'{tmp_path}/config.json is not valid '
                                       'JSON .* truncated or corrupt.*'
                                       'checkpoints are untouched') as error:
    transfer.source_config(tmp_path)
  assert errors.is_user_error(error.value)
  assert sorted(p.name for p in tmp_path.rglob('*')) == before
  assert (tmp_path / 'config.json').read_text() == text


def test_a_garbled_import_record_is_named(tmp_path):
  (tmp_path / imported.INFO_FILE).write_text('{"model": "efficientnet_b0", ')
  with pytest.raises(ValueError, match=f'{imported.INFO_FILE} is not valid '
                                       'JSON.*import_weights job again'):
    imported.load(tmp_path)
  with pytest.raises(ValueError, match='is not valid JSON'):
    transfer.preprocessing_spec(tmp_path)
