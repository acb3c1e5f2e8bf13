package orbit

import (
	"math"
	"strings"
	"testing"
	"time"
)

// t0 is an arbitrary fixed instant; nothing here reads the clock.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// orbits covers the inclinations and altitudes the properties below are
// checked against.
var orbits = []struct {
	name string
	c    Circular
}{
	{"default", Circular{}},
	{"ISS-like", Circular{AltitudeKm: 420, InclinationDeg: 51.6, RAANDeg: 123, PhaseDeg: 45, Epoch: t0}},
	{"polar", Circular{AltitudeKm: 800, InclinationDeg: 90, RAANDeg: -30, PhaseDeg: 270, Epoch: t0}},
	{"retrograde", Circular{AltitudeKm: 1200, InclinationDeg: 140, RAANDeg: 359, PhaseDeg: -10}},
	{"near-equatorial", Circular{AltitudeKm: 600, InclinationDeg: 1e-3, Epoch: t0}},
	{"retrograde equatorial", Circular{AltitudeKm: 600, InclinationDeg: 180, Epoch: t0}},
	{"MEO", Circular{AltitudeKm: 20200, InclinationDeg: 55, RAANDeg: 10, PhaseDeg: 100}},
	{"GEO", Circular{AltitudeKm: 35786, InclinationDeg: 0.05, RAANDeg: 75, Epoch: t0}},
}

// samples calls f at n instants spread over two periods of c from t0.
func samples(c Circular, n int, f func(Position)) {
	span := 2 * c.Period()
	for k := range n {
		f(c.At(t0.Add(span * time.Duration(k) / time.Duration(n))))
	}
}

func norm(v [3]float64) float64 { return math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2]) }

func dist(a, b [3]float64) float64 {
	return norm([3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]})
}

func relErr(got, want float64) float64 { return math.Abs(got-want) / math.Abs(want) }

func TestLatitudeBoundedByInclination(t *testing.T) {
	for _, tt := range orbits {
		t.Run(tt.name, func(t *testing.T) {
			i := tt.c.inclination()
			limit := min(i, 180-i) + 1e-9
			samples(tt.c, 2000, func(p Position) {
				if math.Abs(p.LatitudeDeg) > limit {
					t.Fatalf("at %v: latitude %v beyond ±%v for inclination %v", p.Time, p.LatitudeDeg, limit, i)
				}
			})
		})
	}
}

func TestLatitudeReachesInclination(t *testing.T) {
	// The bound above would also hold for a spacecraft stuck on the
	// equator; check that the extreme is actually reached.
	for _, tt := range orbits {
		t.Run(tt.name, func(t *testing.T) {
			i := tt.c.inclination()
			want := min(i, 180-i)
			var most float64
			samples(tt.c, 2000, func(p Position) { most = max(most, math.Abs(p.LatitudeDeg)) })
			// 2000 samples over two periods are 0.36° of arc apart.
			if most < want-0.5 {
				t.Errorf("highest |latitude| %v, want about %v", most, want)
			}
		})
	}
}

func TestEquatorialStaysOnEquator(t *testing.T) {
	tests := []struct {
		name string
		c    Circular
		tol  float64 // degrees
	}{
		{"prograde 1e-9", Circular{InclinationDeg: 1e-9}, 1e-8},
		{"prograde 1e-3", Circular{InclinationDeg: 1e-3}, 1e-3 + 1e-9},
		{"retrograde 180", Circular{InclinationDeg: 180, PhaseDeg: 33}, 1e-9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			samples(tt.c, 500, func(p Position) {
				if math.Abs(p.LatitudeDeg) > tt.tol {
					t.Fatalf("at %v: latitude %v, want within %v of 0", p.Time, p.LatitudeDeg, tt.tol)
				}
			})
		})
	}
}

func TestRadiusAndSpeed(t *testing.T) {
	for _, tt := range orbits {
		t.Run(tt.name, func(t *testing.T) {
			r := earthRadiusKm + tt.c.altitude()
			v := math.Sqrt(mu / r)
			samples(tt.c, 200, func(p Position) {
				if e := relErr(norm(p.ECI), r); e > 1e-9 {
					t.Fatalf("at %v: |ECI| = %v, want %v", p.Time, norm(p.ECI), r)
				}
				if e := relErr(norm(p.ECIVelocity), v); e > 1e-9 {
					t.Fatalf("at %v: |ECIVelocity| = %v, want %v", p.Time, norm(p.ECIVelocity), v)
				}
				if e := relErr(norm(p.ECEF), norm(p.ECI)); e > 1e-12 {
					t.Fatalf("at %v: |ECEF| = %v, |ECI| = %v", p.Time, norm(p.ECEF), norm(p.ECI))
				}
				if p.AltitudeKm != tt.c.altitude() {
					t.Fatalf("at %v: AltitudeKm = %v, want %v", p.Time, p.AltitudeKm, tt.c.altitude())
				}
			})
		})
	}
}

func TestECEFVelocityIsDerivative(t *testing.T) {
	const h = 500 * time.Millisecond
	for _, tt := range orbits {
		t.Run(tt.name, func(t *testing.T) {
			samples(tt.c, 50, func(p Position) {
				before, after := tt.c.At(p.Time.Add(-h)), tt.c.At(p.Time.Add(h))
				var fd [3]float64
				for k := range fd {
					fd[k] = (after.ECEF[k] - before.ECEF[k]) / (2 * h.Seconds())
				}
				// 1 cm/s: central differences over 1 s are good to
				// about 1e-6 km/s here.
				if d := dist(fd, p.ECEFVelocity); d > 1e-5 {
					t.Fatalf("at %v: ECEFVelocity %v, finite difference %v (off by %v km/s)", p.Time, p.ECEFVelocity, fd, d)
				}
			})
		})
	}
}

func TestPeriodic(t *testing.T) {
	for _, tt := range orbits {
		t.Run(tt.name, func(t *testing.T) {
			start := tt.c.At(t0)
			for _, revs := range []int{1, 2, 15} {
				p := tt.c.At(t0.Add(time.Duration(revs) * tt.c.Period()))
				// Decades from the epoch, a float64 of seconds resolves
				// about 2e-7 s, some 2 mm at LEO speed; allow 1 cm.
				if d := dist(p.ECI, start.ECI); d > 1e-5 {
					t.Errorf("after %d periods ECI is %v km from the start (%v, then %v)", revs, d, start.ECI, p.ECI)
				}
			}
		})
	}
}

func TestPeriod(t *testing.T) {
	tests := []struct {
		c        Circular
		min, max time.Duration
	}{
		{Circular{}, 95*time.Minute + 30*time.Second, 95*time.Minute + 40*time.Second}, // 550 km: 5736 s
		{Circular{AltitudeKm: 35786}, 23*time.Hour + 55*time.Minute, 23*time.Hour + 57*time.Minute},
	}
	for _, tt := range tests {
		if got := tt.c.Period(); got < tt.min || got > tt.max {
			t.Errorf("%+v.Period() = %v, want in [%v, %v]", tt.c, got, tt.min, tt.max)
		}
	}
}

func TestMoves(t *testing.T) {
	for _, tt := range orbits {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tt.c.At(t0), tt.c.At(t0.Add(time.Minute))
			// Even at GEO the inertial position moves 180 km a minute.
			if d := dist(a.ECI, b.ECI); d < 100 {
				t.Errorf("ECI moved %v km in a minute", d)
			}
			if a.ECEF == b.ECEF {
				t.Errorf("ECEF did not move in a minute: %v", a.ECEF)
			}
			if a.LatitudeDeg == b.LatitudeDeg && a.LongitudeDeg == b.LongitudeDeg {
				t.Errorf("latitude and longitude did not change in a minute: %v, %v", a.LatitudeDeg, a.LongitudeDeg)
			}
			if !b.Time.Equal(t0.Add(time.Minute)) {
				t.Errorf("Time = %v, want %v", b.Time, t0.Add(time.Minute))
			}
		})
	}
}

func TestLongitudeRange(t *testing.T) {
	for _, tt := range orbits {
		t.Run(tt.name, func(t *testing.T) {
			// Sample over many Earth rotations, not just two periods.
			for k := range 5000 {
				p := tt.c.At(t0.Add(time.Duration(k) * 7 * time.Minute))
				if !(p.LongitudeDeg >= -180 && p.LongitudeDeg < 180) {
					t.Fatalf("at %v: longitude %v outside [-180, 180)", p.Time, p.LongitudeDeg)
				}
			}
		})
	}
}

func TestWrapLongitude(t *testing.T) {
	tests := []struct{ in, want float64 }{
		{180, -180},
		{-180, -180},
		{179.999, 179.999},
		{0, 0},
		{-45, -45},
	}
	for _, tt := range tests {
		if got := wrapLongitude(tt.in); got != tt.want {
			t.Errorf("wrapLongitude(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestEarthRotationAngle(t *testing.T) {
	tests := []struct {
		t    time.Time
		want float64 // degrees
	}{
		// At J2000.0 the ERA is 2π·0.7790572732640.
		{time.Unix(j2000Unix, 0), 0.7790572732640 * 360},
		// One stellar day (86164.0989 s) later it comes back round.
		{time.Unix(j2000Unix, 0).Add(86164098904 * time.Microsecond), 0.7790572732640 * 360},
		// Before J2000 as well; twelve hours turn it by 180.49°.
		{time.Unix(j2000Unix-43200, 0), 0.7790572732640*360 - 180.492806144044},
	}
	for _, tt := range tests {
		got := deg(earthRotationAngle(tt.t))
		if math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("ERA at %v = %v°, want %v°", tt.t, got, tt.want)
		}
	}
}

func TestZeroValueIsDefault(t *testing.T) {
	explicit := Circular{AltitudeKm: 550, InclinationDeg: 97.6, Epoch: time.Unix(0, 0)}
	if err := (Circular{}).Check(); err != nil {
		t.Fatalf("zero value: Check() = %v", err)
	}
	if got, want := (Circular{}).Period(), explicit.Period(); got != want {
		t.Errorf("zero value Period() = %v, want %v", got, want)
	}
	for _, at := range []time.Time{time.Unix(0, 0), t0} {
		if got, want := (Circular{}).At(at), explicit.At(at); got != want {
			t.Errorf("zero value At(%v) = %+v, want %+v", at, got, want)
		}
	}
	// At the epoch, phase 0 is the ascending node: on the equator,
	// heading north.
	p := Circular{}.At(time.Unix(0, 0))
	if math.Abs(p.LatitudeDeg) > 1e-9 || p.ECIVelocity[2] <= 0 {
		t.Errorf("at the epoch: latitude %v, vz %v; want the ascending node", p.LatitudeDeg, p.ECIVelocity[2])
	}
}

func TestCheck(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		c    Circular
		want string // in the error; "" means no error
	}{
		{"zero", Circular{}, ""},
		{"lowest", Circular{AltitudeKm: 100}, ""},
		{"highest", Circular{AltitudeKm: 100000}, ""},
		{"retrograde equatorial", Circular{InclinationDeg: 180}, ""},
		{"angles unreduced", Circular{RAANDeg: -720, PhaseDeg: 1e6}, ""},

		{"too low", Circular{AltitudeKm: 99.9}, "AltitudeKm 99.9 outside [100, 100000] km"},
		{"negative altitude", Circular{AltitudeKm: -550}, "AltitudeKm -550 outside [100, 100000] km"},
		{"too high", Circular{AltitudeKm: 100001}, "AltitudeKm 100001 outside [100, 100000] km"},
		{"altitude NaN", Circular{AltitudeKm: nan}, "AltitudeKm NaN outside"},
		{"altitude Inf", Circular{AltitudeKm: inf}, "AltitudeKm +Inf outside"},
		{"negative inclination", Circular{InclinationDeg: -1}, "InclinationDeg -1 outside [0, 180] degrees"},
		{"inclination over 180", Circular{InclinationDeg: 180.5}, "InclinationDeg 180.5 outside [0, 180] degrees"},
		{"inclination NaN", Circular{InclinationDeg: nan}, "InclinationDeg NaN outside"},
		{"inclination -Inf", Circular{InclinationDeg: -inf}, "InclinationDeg -Inf outside"},
		{"RAAN NaN", Circular{RAANDeg: nan}, "RAANDeg NaN is not a finite"},
		{"RAAN Inf", Circular{RAANDeg: inf}, "RAANDeg +Inf is not a finite"},
		{"phase NaN", Circular{PhaseDeg: nan}, "PhaseDeg NaN is not a finite"},
		{"phase -Inf", Circular{PhaseDeg: -inf}, "PhaseDeg -Inf is not a finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Check()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Check() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("Check() = nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Check() = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFarFromEpoch(t *testing.T) {
	// time.Time.Sub saturates ~292 years out; At must not.
	c := Circular{Epoch: time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, b := c.At(t0), c.At(t0.Add(time.Minute))
	if d := dist(a.ECI, b.ECI); d < 400 || d > 500 {
		t.Errorf("ECI moved %v km in a minute, 325 years after the epoch; want about 455", d)
	}
}

func BenchmarkAt(b *testing.B) {
	c := Circular{AltitudeKm: 500, InclinationDeg: 51.6, Epoch: t0}
	at := t0
	for b.Loop() {
		c.At(at)
		at = at.Add(time.Second)
	}
}
