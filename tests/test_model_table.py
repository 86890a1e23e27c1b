"""The model-table job end to end, through launch.py as a user runs it."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from dvl import models

ROOT = Path(__file__).resolve().parents[1]


def launch(*args, workdir):
  return subprocess.run(
      [sys.executable, 'launch.py', *args, '--workdir', str(workdir)],
      cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_runlocal_model_table(tmp_path):
  result = launch('--config', 'experiments/model_table.py:runlocal',
                  workdir=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = list(csv.DictReader(open(tmp_path / 'model_table.csv')))
  by_name = {r['model']: r for r in rows}
  assert by_name['resnet18']['params'] == '11689512'
  assert by_name['efficientnet_b0']['params'] == '5288548'
  assert all(r['ok'] == 'True' for r in rows)
  # pycls's activations, compared where the spec carries them.
  b0 = by_name['efficientnet_b0']
  assert float(b0['ref_activations_M']) == (
      models.get_spec('efficientnet_b0').reference.activations_m)
  assert abs(float(b0['activations_dev_pct'])) <= 2
  assert by_name['lenet5']['activations_M'] == '0.007'
  assert by_name['lenet5']['activations_dev_pct'] == ''
  markdown = (tmp_path / 'model_table.md').read_text()
  assert '| resnet18 | 224 | 11,689,512 |' in markdown
  assert 'BatchNorm running statistics excluded' in markdown
  assert 'dense layer for one image (Dollar et al. 2021' in markdown
  assert '| resnet18 |' in result.stdout


def test_table3_runlocal_writes_semantics(tmp_path):
  result = launch('--config', 'experiments/model_table.py:table3,runlocal',
                  workdir=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = list(csv.DictReader(open(tmp_path / 'model_table.csv')))
  assert [r['scaled by'] for r in rows][:2] == ['baseline', 'width w=2']
  assert all(abs(float(r['dev_pct'])) < 10 for r in rows)
  assert 'Scaling semantics' in (tmp_path / 'model_table.md').read_text()


@pytest.mark.parametrize('args,message', [
    (['--config', 'experiments/model_table.py', '--config.tabel=zoo'],
     'tabel'),
    (['--config', 'experiments/model_table.py:tabel3'],
     "unknown config argument 'tabel3'"),
    (['--config', 'experiments/model_table.py',
      "--config.models=('resnet5',)"], "unknown model 'resnet5'"),
])
def test_bad_input_is_reported(tmp_path, args, message):
  result = launch(*args, workdir=tmp_path)
  assert result.returncode != 0
  assert message in result.stderr
