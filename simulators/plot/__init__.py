"""`bosai sim plot`: a picture of a scenario's ground truth, for people to look at.

One figure, one row of panels per device (shared time axis, hours since the scenario start):

* river stage with the registry's stage thresholds (水防団待機水位 ... 氾濫危険水位, labelled in
  Japanese and English), the times the true stage crossed them (triangles up / down), and the
  rain that drives the flood as inverted bars hanging from the top (a classic hydrograph);
* snow depth with its thresholds, the hourly new snow (JMA 降雪量, the depth increase over each
  hour) as bars, the fresh snow that fell (before settling) as outlines, the snowfall intensity,
  and the largest 24 h new-snow total;
* slope tilt (or displacement) with its thresholds and the failure time, and beneath it the
  inverse velocity 1/v (Fukuzono): a straight line falling to zero at failure for alpha = 2, with
  the line a slope engineer would fit to the last part and where it reaches zero;
* temperatures together in one small panel; any other kind in a panel of its own.

Scheduled faults shade the panels of their device (link loss: every panel), labelled with the
fault type and its note.  Thresholds come from the truth's crossing records; given the scenario
(`plot_truth(..., scenario=...)`, as `bosai sim plot --scenario` does) the registry's thresholds
that were not reached are drawn too (dotted), with site names and the rain or snowfall signal
behind each device.  matplotlib is imported only when drawing: the CLI imports this package at
startup.

The modules, each with one job:

* `cli` - the command's arguments, and loading the scenario or a truth file;
* `records` - truth records parsed and grouped into panels, thresholds, forcings and names;
* `figure` - `plot_truth`: the layout, the legends, and the small temperature / other panels;
* `context` - what every panel's drawing shares (geometry, text widths, twin axes, titles);
* `thresholds` - measured curves with their threshold lines, labels and crossings;
* `faults` - fault windows shaded and labelled;
* `river`, `snow`, `slope` - the drawing of each kind of panel.
"""

from simulators.plot.cli import add_plot_parser
from simulators.plot.figure import plot_truth
from simulators.plot.records import TruthError

__all__ = ["TruthError", "add_plot_parser", "plot_truth"]
