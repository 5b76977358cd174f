package loadgen

import (
	"fmt"
	"image/color"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot draws r as a PNG at path: the fan-out latency distribution
// (histogram and percentile curve) above, throughput and p99 over time below.
func WritePlot(r *Result, path string) error {
	lat := r.Latencies()
	ms := make(plotter.Values, len(lat))
	for i, d := range lat {
		ms[i] = float64(d.Microseconds()) / 1000
	}
	title := fmt.Sprintf("%s — %s", r.Scenario, r.Server)

	hist := plot.New()
	hist.Title.Text = "fan-out latency distribution"
	hist.X.Label.Text = "ms"
	hist.Y.Label.Text = "changes"
	if len(ms) > 0 {
		h, err := plotter.NewHist(ms, 40)
		if err != nil {
			return err
		}
		h.FillColor = color.RGBA{R: 70, G: 130, B: 180, A: 255}
		hist.Add(h)
	}

	cdf := plot.New()
	cdf.Title.Text = "fan-out latency percentiles"
	cdf.X.Label.Text = "percentile"
	cdf.Y.Label.Text = "ms"
	if len(ms) > 0 {
		s := slices.Clone([]float64(ms))
		slices.Sort(s)
		n := min(len(s), 500)
		pts := make(plotter.XYs, n)
		for i := range n {
			j := i * (len(s) - 1) / max(n-1, 1)
			pts[i] = plotter.XY{X: 100 * float64(j) / float64(max(len(s)-1, 1)), Y: s[j]}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = color.RGBA{R: 200, G: 60, B: 40, A: 255}
		cdf.Add(l)
		cdf.Legend.Add(fmt.Sprintf("p50 %.1f  p99 %.1f  max %.1f ms", r.Latency.P50, r.Latency.P99, r.Latency.Max), l)
		if len(r.Steps) > 0 {
			cdf.Legend.Add("(all ramp steps)")
		}
		cdf.Legend.Top, cdf.Legend.Left = true, true
	}

	thr := plot.New()
	thr.Title.Text = "throughput over time"
	thr.X.Label.Text = "s"
	thr.Y.Label.Text = "changes/s"
	p99 := plot.New()
	p99.Title.Text = "p99 fan-out per second (and server CPU)"
	p99.X.Label.Text = "s"
	p99.Y.Label.Text = "ms  /  % of a core"
	if len(r.Timeline) > 0 {
		made := make(plotter.XYs, len(r.Timeline))
		del := make(plotter.XYs, len(r.Timeline))
		pl := make(plotter.XYs, len(r.Timeline))
		cpu := make(plotter.XYs, len(r.Timeline))
		hasCPU := false
		for i, s := range r.Timeline {
			made[i] = plotter.XY{X: s.T, Y: s.Made}
			del[i] = plotter.XY{X: s.T, Y: s.Delivered}
			pl[i] = plotter.XY{X: s.T, Y: s.P99}
			cpu[i] = plotter.XY{X: s.T, Y: s.CPU}
			hasCPU = hasCPU || s.CPU > 0
		}
		for _, x := range []struct {
			name string
			pts  plotter.XYs
			c    color.RGBA
			p    *plot.Plot
		}{
			{"made", made, color.RGBA{R: 70, G: 130, B: 180, A: 255}, thr},
			{"delivered to every peer", del, color.RGBA{R: 40, G: 160, B: 60, A: 255}, thr},
			{"p99 ms", pl, color.RGBA{R: 200, G: 60, B: 40, A: 255}, p99},
		} {
			l, err := plotter.NewLine(x.pts)
			if err != nil {
				return err
			}
			l.Color = x.c
			x.p.Add(l)
			x.p.Legend.Add(x.name, l)
		}
		if hasCPU {
			l, err := plotter.NewLine(cpu)
			if err != nil {
				return err
			}
			l.Color = color.RGBA{R: 120, G: 120, B: 120, A: 255}
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			p99.Add(l)
			p99.Legend.Add("server CPU %", l)
		}
		thr.Legend.Top, p99.Legend.Top = true, true
		thr.Y.Min, p99.Y.Min = 0, 0
	}

	const w, h = 30 * vg.Centimeter, 22 * vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	top, body := splitTitle(dc, title)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	plots := [][]*plot.Plot{{hist, cdf}, {thr, p99}}
	canvases := plot.Align(plots, tiles, body)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	top()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// splitTitle reserves a strip at the top of dc for the title; it returns a
// function that draws it and the canvas below it.
func splitTitle(dc draw.Canvas, title string) (func(), draw.Canvas) {
	p := plot.New()
	sty := p.Title.TextStyle
	sty.Font.Size = vg.Points(13)
	sty.XAlign = draw.XCenter
	hgt := sty.Height(title) + vg.Millimeter*8
	body := dc
	body.Max.Y -= hgt
	return func() {
		pt := vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - hgt + vg.Millimeter*4}
		dc.FillText(sty, pt, title)
	}, body
}
