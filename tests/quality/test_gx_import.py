"""Great Expectations is imported without pyspark, which its suites never use."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gx_import_leaves_pyspark_unimported_and_importable() -> None:
    code = (
        "import sys\n"
        "from assets.quality import _import_gx\n"
        "_import_gx()\n"
        "import great_expectations.expectations as gxe\n"
        "print('gx', hasattr(gxe, 'ExpectColumnValuesToNotBeNull'))\n"
        "print('pyspark loaded by gx', 'pyspark' in sys.modules)\n"
        "import pyspark\n"
        "print('pyspark after', pyspark.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    assert out == ["gx True", "pyspark loaded by gx False", "pyspark after pyspark"]
