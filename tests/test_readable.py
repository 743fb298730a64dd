"""Notebook output for a reader: numbers as quoted, mappings as phrases, tables without machinery."""

import numpy as np
import pandas as pd

from braintumour.reporting import readable


def test_numbers_read_as_the_text_quotes_them():
    said = [readable.number(v) for v in (0.99241234, 12.30, 1.0, 5140, np.int64(3), np.float32(0.5), 4e-6,
                                         [0.93, 0.981], None, float("nan"), np.True_, "glioma")]
    assert said == ["0.9924", "12.3", "1", "5,140", "3", "0.5", "4.0e-06", "0.93–0.981", "–", "–", "yes", "glioma"]


def test_mappings_become_phrases_and_targets_say_which_are_missed():
    assert readable.listing({"train": 5140, "val": 572, "test": 1311}) == "train 5,140, val 572 and test 1,311"
    assert readable.listing({"only": 1}) == "only 1" and readable.listing({}) == "none"
    assert (readable.targets_sentence({"testing_accuracy": True, "br35h_detected": False})
            == "met: testing accuracy; missed: br35h detected")
    compute = {"device": "cpu", "device_name": "AMD EPYC", "precision": "bfloat16", "cpu_capability": "AVX512",
               "threads": 2}
    assert readable.compute_sentence(compute) == "cpu (AMD EPYC, AVX512), bfloat16, 2 threads"


def test_a_table_hides_a_meaningless_index_and_gives_each_key_of_a_dict_cell_a_column():
    frame = pd.DataFrame([{"model": "a", "mix": {"glioma": 0.1, "notumor": 0.9}, "95% CI": [0.9, 0.95]},
                          {"model": "b", "mix": {"glioma": 0.2}, "95% CI": [0.8, 0.9]}])
    html = readable.table(frame).to_html()
    assert "mix: glioma" in html and "mix: notumor" in html and "0.9–0.95" in html
    assert "{" not in html.split("</style>")[-1] and ">0<" not in html and ">1<" not in html  # no dict, no 0, 1 index
    named = readable.table(pd.DataFrame({"accuracy": [0.99]}, index=pd.Index(["custom CNN"], name="model")))
    assert "custom CNN" in named.to_html()  # an index that names things stays


def test_the_same_table_renders_the_same_html_twice():
    frame = pd.DataFrame({"x": [1.5, 2.25]})
    assert readable.table(frame).to_html() == readable.table(frame).to_html()


def test_settings_say_a_mapping_as_a_phrase():
    table = readable.settings({"image_size": 128, "steps": {"lenet5": 4000, "resnet50": 421}}, ["image_size", "steps"])
    assert table.value.tolist() == ["128", "lenet5 4,000 and resnet50 421"]


def test_a_printed_dict_or_list_is_said_as_a_phrase_and_an_index_is_left_alone():
    said = readable.without_reprs("steps: {'lenet5': 4000, 'alexnet': 1324}; models: ['a.pt', 'b.pt']; "
                                  "ci [0.93, 0.98]; cams: {'cnn': {'gradcam': 619}}; f(x)[0], {not a literal}")
    assert said == ("steps: lenet5 4,000 and alexnet 1,324; models: a.pt, b.pt; ci 0.93–0.98; cams: cnn: gradcam 619; "
                    "f(x)[0], {not a literal}")
    assert readable.without_reprs("{'glioma': 0.02, 'notumor'...") == "glioma 0.02, notumor..."  # cut by pandas


def test_html_keeps_its_tags_and_says_the_dicts_in_its_cells():
    markup = '<td class="x">{&#x27;notumor&#x27;: 1500}</td><td>a &lt; b</td><p>x[0]</p>'
    assert readable.html_without_reprs(markup) == '<td class="x">notumor 1,500</td><td>a &lt; b</td><p>x[0]</p>'


def test_pandas_row_numbers_leave_a_table_and_named_rows_stay():
    numbered = pd.DataFrame({"model": ["a", "b"], "accuracy": [0.9, 0.8]}).to_html()
    shown = readable.html_without_row_numbers(numbered)
    assert "<th>model</th>" in shown and "<th>0</th>" not in shown and "<th>1</th>" not in shown
    assert shown.count("<td>") == numbered.count("<td>")  # every value stays
    named = pd.DataFrame({"accuracy": [0.9]}, index=pd.Index(["custom CNN"])).to_html()
    assert readable.html_without_row_numbers(named) == named
