"""Reading measurements CSVs: good rows, blanks allowed, one-line errors naming file/row/column."""

import pytest

from solver.errors import InputError
from solver.inputs.validation_csv import matches, read_measurements

HEADER = ("model,gpu,nodes,gpus_used_per_node,interconnect,nic_gbps,tp,pp,input_len,output_len,"
          "num_requests,measured_tok_s,source\n")
GOOD = "llama3-8b,SYN,1,2,nvlink,,2,1,1000,100,8,5000,lab\n"
TWO_NODES = "llama3-8b,SYN,2,2,nvlink,25,2,2,1000,100,,4000,other\n"


def test_reads_rows_and_blanks(write):
    rows = read_measurements(write("m.csv", HEADER + GOOD + "\n" + TWO_NODES))
    assert [(r.row, r.tp, r.pp, r.num_requests, r.nic_gbps) for r in rows] == [(1, 2, 1, 8, None),
                                                                            (2, 2, 2, None, 25.0)]
    assert rows[0].dtype == "fp16" and rows[0].columns["source"] == "lab"


@pytest.mark.parametrize("row, match", [
    (GOOD.replace(",8,5000", ",8,fast"), r"row 1 \(line 2\), column measured_tok_s: not a number: 'fast'"),
    (GOOD.replace(",2,1,1000", ",2,1,0"), r"row 1 \(line 2\), column input_len: must be >= 1"),
    (GOOD.replace(",2,1,1000", ",2,1.5,1000"), r"column pp: must be a whole number"),
    (GOOD.replace("nvlink", "ethernet"), r"column interconnect: must be one of pcie, nvlink"),
    (GOOD.replace("llama3-8b", ""), r"column model: is blank"),
    (GOOD.replace(",2,nvlink,,2,1,", ",4,nvlink,,2,1,"), r"column pp: tp x pp = 2 GPUs but nodes x gpus_used_per_node = 4"),
    (GOOD.replace(",lab", ",lab,extra"), r"row 1 \(line 2\): 14 cells, header has 13"),
])
def test_bad_cells_are_one_line_errors(write, row, match):
    path = write("m.csv", HEADER + row)
    with pytest.raises(InputError, match=match) as e:
        read_measurements(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_missing_column(write):
    with pytest.raises(InputError, match=r"header: missing column\(s\): measured_tok_s"):
        read_measurements(write("m.csv", HEADER.replace(",measured_tok_s", "") + "x\n"))


def test_missing_file_and_empty(write, tmp_path):
    with pytest.raises(InputError, match="cannot read file"):
        read_measurements(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="no data rows"):
        read_measurements(write("m.csv", HEADER))


def test_selection(write):
    one, two = read_measurements(write("m.csv", HEADER + GOOD + TWO_NODES))
    assert matches(one, "source=lab,nodes=1") and not matches(two, "source=lab")
    assert matches(two, "nodes>1") and not matches(one, "nodes>1") and matches(one, "")
    with pytest.raises(InputError, match="no column 'colour'"):
        matches(one, "colour=red")
