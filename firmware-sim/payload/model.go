package payload

import (
	"math"
	"math/rand/v2"
)

// Model produces a plausible series of readings for one device: slow
// temperature and humidity drift with a daily swing, vibration noise with
// rare spikes, and a battery that drains. Not safe for concurrent use.
type Model struct {
	rng         *rand.Rand
	baseTemp    float64
	temperature float64
	humidity    float64
	battery     float64
	step        int64
}

// NewModel returns a model whose randomness comes only from rng, so a
// seeded rng gives a reproducible device.
func NewModel(rng *rand.Rand) *Model {
	base := 12 + rng.Float64()*16
	return &Model{
		rng:         rng,
		baseTemp:    base,
		temperature: base,
		humidity:    35 + rng.Float64()*30,
		battery:     60 + rng.Float64()*40,
	}
}

// Next fills the sensor fields of r; it leaves Device, Seq and TS alone.
func (m *Model) Next(r *Reading) {
	m.step++
	daily := 4 * math.Sin(float64(m.step)/600*math.Pi)
	m.temperature += (m.baseTemp+daily-m.temperature)*0.05 + m.rng.NormFloat64()*0.1
	m.humidity = clamp(m.humidity+m.rng.NormFloat64()*0.3, 5, 98)
	m.battery = clamp(m.battery-m.rng.Float64()*0.001, 0, 100)
	vib := math.Abs(m.rng.NormFloat64()) * 0.02
	if m.rng.IntN(500) == 0 {
		vib += 1 + m.rng.Float64()*4
	}
	r.Temperature = clamp(m.temperature, -60, 100)
	r.Humidity = m.humidity
	r.Vibration = clamp(vib, 0, 50)
	r.Battery = m.battery
}

func clamp(v, lo, hi float64) float64 {
	return math.Max(lo, math.Min(hi, v))
}
