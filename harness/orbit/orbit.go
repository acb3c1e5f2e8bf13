// Package orbit is the bench's position source: the Payload Controller's
// GetCurrentLocation and its GNSS ephemeris stream read a Circular orbit
// around a spherical, rotating Earth, so a payload sees its position move.
//
// Units are those the Payload Controller reports: angles in degrees,
// distances in km, velocities in km/s. The inertial frame (ECI) has z along
// Earth's axis; the Earth-fixed frame (ECEF) is ECI rotated by the Earth
// Rotation Angle, taking UT1 as UTC. Latitude is geocentric.
//
// The model is deliberately simple: two bodies, a spherical Earth, no
// perturbations (so the node does not precess). It is meant to move
// plausibly, not to predict where a real spacecraft is.
package orbit

import (
	"fmt"
	"math"
	"time"
)

const (
	earthRadiusKm = 6371.0      // mean radius; altitudes are above it
	mu            = 398600.4418 // Earth's gravitational parameter, km³/s²
	// Earth's rotation rate, rad/s. It agrees with the rate of the Earth
	// Rotation Angle to about 2e-11 relative.
	omega = 7.2921150e-5

	defaultAltitudeKm     = 550
	defaultInclinationDeg = 97.6

	minAltitudeKm = 100    // below this drag would end a real orbit within hours
	maxAltitudeKm = 100000 // well beyond GEO; anything higher is a typo

	j2000Unix = 946728000 // 2000-01-01 12:00 UTC, JD 2451545.0
)

// Circular is a circular orbit. Its zero value is a 550 km, 97.6°
// (sun-synchronous-like) orbit whose epoch is the Unix epoch.
//
// Because 0 means the default, an equatorial orbit is written with a tiny
// inclination such as 1e-9 (prograde) or as 180 (retrograde).
type Circular struct {
	AltitudeKm     float64   // above the mean Earth radius (6371 km); 0 means 550
	InclinationDeg float64   // in [0, 180]; 0 means 97.6
	RAANDeg        float64   // right ascension of the ascending node; constant, as nothing makes it precess
	PhaseDeg       float64   // argument of latitude at Epoch
	Epoch          time.Time // when the spacecraft is at PhaseDeg; zero means the Unix epoch
}

// Position is where an orbit puts the spacecraft at Time.
type Position struct {
	Time time.Time

	LatitudeDeg  float64 // geocentric, in [-90, 90]
	LongitudeDeg float64 // in [-180, 180)
	AltitudeKm   float64 // above the mean Earth radius

	ECI          [3]float64 // km, inertial, z along Earth's axis
	ECIVelocity  [3]float64 // km/s, inertial
	ECEF         [3]float64 // km, Earth-fixed
	ECEFVelocity [3]float64 // km/s, relative to the rotating Earth
}

func (c Circular) altitude() float64 {
	if c.AltitudeKm == 0 {
		return defaultAltitudeKm
	}
	return c.AltitudeKm
}

func (c Circular) inclination() float64 {
	if c.InclinationDeg == 0 {
		return defaultInclinationDeg
	}
	return c.InclinationDeg
}

func (c Circular) epoch() time.Time {
	if c.Epoch.IsZero() {
		return time.Unix(0, 0)
	}
	return c.Epoch
}

func (c Circular) radius() float64 { return earthRadiusKm + c.altitude() }

// Check reports whether c describes an orbit At can compute: an altitude
// in [100, 100000] km, an inclination in [0, 180] degrees and finite angles.
// Period and At assume c passes Check.
func (c Circular) Check() error {
	// Written as !(in range) so that NaN fails too.
	if a := c.altitude(); !(a >= minAltitudeKm && a <= maxAltitudeKm) {
		return fmt.Errorf("orbit: AltitudeKm %v outside [%v, %v] km", c.AltitudeKm, minAltitudeKm, maxAltitudeKm)
	}
	if i := c.InclinationDeg; !(i >= 0 && i <= 180) {
		return fmt.Errorf("orbit: InclinationDeg %v outside [0, 180] degrees", i)
	}
	if !finite(c.RAANDeg) {
		return fmt.Errorf("orbit: RAANDeg %v is not a finite number of degrees", c.RAANDeg)
	}
	if !finite(c.PhaseDeg) {
		return fmt.Errorf("orbit: PhaseDeg %v is not a finite number of degrees", c.PhaseDeg)
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Period is the time c takes for one revolution, 2π√(r³/μ).
func (c Circular) Period() time.Duration {
	r := c.radius()
	s := 2 * math.Pi * math.Sqrt(r*r*r/mu)
	return time.Duration(s * float64(time.Second))
}

// At returns the spacecraft's position at t.
func (c Circular) At(t time.Time) Position {
	r := c.radius()
	n := math.Sqrt(mu / (r * r * r)) // mean motion, rad/s
	v := r * n                       // = √(μ/r)

	// Argument of latitude. Reduce n·dt before adding the phase so that
	// the angle stays small whatever the elapsed time.
	u := rad(c.PhaseDeg) + math.Mod(n*seconds(t, c.epoch()), 2*math.Pi)
	su, cu := math.Sincos(u)
	si, ci := math.Sincos(rad(c.inclination()))
	sO, cO := math.Sincos(rad(c.RAANDeg))

	// Orbital plane to ECI: rotate by the inclination about x, then by
	// the RAAN about z.
	p := Position{Time: t, AltitudeKm: c.altitude()}
	p.ECI = [3]float64{
		r * (cO*cu - sO*su*ci),
		r * (sO*cu + cO*su*ci),
		r * su * si,
	}
	p.ECIVelocity = [3]float64{
		v * (-cO*su - sO*cu*ci),
		v * (-sO*su + cO*cu*ci),
		v * cu * si,
	}

	// ECEF = Rz(-θ)·ECI; the Earth-relative velocity loses ω×r.
	sT, cT := math.Sincos(earthRotationAngle(t))
	x, y, z := p.ECI[0], p.ECI[1], p.ECI[2]
	p.ECEF = [3]float64{cT*x + sT*y, -sT*x + cT*y, z}
	vx, vy, vz := p.ECIVelocity[0], p.ECIVelocity[1], p.ECIVelocity[2]
	p.ECEFVelocity = [3]float64{
		cT*vx + sT*vy + omega*p.ECEF[1],
		-sT*vx + cT*vy - omega*p.ECEF[0],
		vz,
	}

	p.LatitudeDeg = deg(math.Atan2(p.ECEF[2], math.Hypot(p.ECEF[0], p.ECEF[1])))
	p.LongitudeDeg = wrapLongitude(deg(math.Atan2(p.ECEF[1], p.ECEF[0])))
	return p
}

// earthRotationAngle is the Earth Rotation Angle at t in radians, in
// [0, 2π), taking UT1 as UTC (they differ by under a second).
func earthRotationAngle(t time.Time) float64 {
	du := seconds(t, time.Unix(j2000Unix, 0)) / 86400 // JD(UT1) - 2451545.0
	// ERA = 2π(0.7790572732640 + 1.00273781191135448·du), with the whole
	// days of du split off first so the fraction keeps its precision.
	f := math.Mod(du, 1) + 0.7790572732640 + 0.00273781191135448*du
	f = math.Mod(f, 1)
	if f < 0 {
		f++
	}
	return 2 * math.Pi * f
}

// seconds is t - from in seconds. Unlike t.Sub it does not saturate
// ~292 years out, so a far Epoch still gives a position.
func seconds(t, from time.Time) float64 {
	return float64(t.Unix()-from.Unix()) + float64(t.Nanosecond()-from.Nanosecond())/1e9
}

// wrapLongitude maps atan2's (-180, 180] onto [-180, 180).
func wrapLongitude(lon float64) float64 {
	if lon >= 180 {
		lon -= 360
	}
	return lon
}

func rad(d float64) float64 { return d * math.Pi / 180 }
func deg(r float64) float64 { return r * 180 / math.Pi }
