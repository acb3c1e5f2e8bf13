package pi_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/satbench/hil/harness/orbit"
	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/harness/power"
)

// gatedPower is a real power whose Off waits, once entered, until the
// test opens the gate: a switch that takes a while.
type gatedPower struct {
	power.Power
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (g *gatedPower) Off(ctx context.Context) error {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Power.Off(ctx)
}

// Cycle goes through the gated Off.
func (g *gatedPower) Cycle(ctx context.Context, off time.Duration) error {
	return power.OffOn(ctx, g, off)
}

func TestPayloadPowerControl(t *testing.T) {
	pw := payloadPower(t)
	gated := &gatedPower{Power: payloadPower(t), entered: make(chan struct{}), gate: make(chan struct{})}
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, Hardware: map[int32]power.Power{7: pw, 8: gated}})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	status := func(corr int32) pb.ReqStatus {
		t.Helper()
		return pb.ReqStatus(a.waitCall("PA_ProcessResponsePayloadPowerControl", corr).Req.(*pb.RespPayloadPowerControlParams).GetReqStatus())
	}
	ctl := func(corr, op, hw int32, want pb.AntarisReturnCode) {
		t.Helper()
		r, err := pc.PCPayloadPowerControl(ctxT(t), &pb.ReqPayloadPowerControlParams{CorrelationId: corr, PowerOperation: op, HwId: hw})
		code(t, "PC_payload_power_control", r, err, want)
	}

	ctl(1, 2, 7, pb.AntarisReturnCode_An_INVALID_PARAMS)
	if s := status(1); s != pb.ReqStatus_Request_failed {
		t.Errorf("op 2: %v", s)
	}
	if e := b.waitKind(a.Board, pi.EventInvalid); !strings.Contains(e.Detail, "power_operation 2") {
		t.Errorf("invalid event %q", e)
	}

	ctl(2, 0, 99, 0)
	if s := status(2); s != pb.ReqStatus_Invalid_hw_id {
		t.Errorf("unknown hw_id: %v", s)
	}

	ctl(3, 0, 7, 0)
	if s := status(3); s != pb.ReqStatus_Request_success {
		t.Errorf("off: %v", s)
	}
	if s := powerState(t, pw); s != power.Off {
		t.Errorf("after off the payload is %v", s)
	}
	ctl(4, 1, 7, 0)
	if s := status(4); s != pb.ReqStatus_Request_success {
		t.Errorf("on: %v", s)
	}
	if s := powerState(t, pw); s != power.On {
		t.Errorf("after on the payload is %v", s)
	}
	if e := b.waitN(2, kind(a.Board, pi.EventPower)); e.Corr != 4 || !strings.Contains(e.Detail, "hw_id 7 on") {
		t.Errorf("power event %q", e)
	}

	// A second request for the same hardware while one runs.
	ctl(5, 0, 8, 0)
	<-gated.entered
	ctl(6, 1, 8, 0)
	if s := status(6); s != pb.ReqStatus_Another_req_in_progress {
		t.Errorf("second request: %v", s)
	}
	// Other hardware is not held up.
	ctl(7, 0, 7, 0)
	if s := status(7); s != pb.ReqStatus_Request_success {
		t.Errorf("other hardware: %v", s)
	}
	close(gated.gate)
	if s := status(5); s != pb.ReqStatus_Request_success {
		t.Errorf("first request: %v", s)
	}
	if s := powerState(t, gated); s != power.Off {
		t.Errorf("gated payload is %v after off", s)
	}
	// Done, the hardware takes requests again.
	ctl(8, 1, 8, 0)
	if s := status(8); s != pb.ReqStatus_Request_success {
		t.Errorf("after the first: %v", s)
	}
}

// fakeClock is a Config.Now the test advances.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestGetCurrentLocation(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	orb := orbit.Circular{AltitudeKm: 600, InclinationDeg: 53}
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, Orbit: orb, Now: clock.Now})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	var prev *pb.RespGetCurrentLocationParams
	for i := range int32(4) {
		r, err := pc.PCGetCurrentLocation(ctxT(t), &pb.ReqGetCurrentLocationParams{CorrelationId: 100 + i})
		code(t, "PC_get_current_location", r, err, 0)
		loc := a.waitCall("PA_ProcessResponseGetCurrentLocation", 100+i).Req.(*pb.RespGetCurrentLocationParams)
		if loc.GetReqStatus() != 0 {
			t.Errorf("req_status %d", loc.GetReqStatus())
		}
		// A 53° orbit stays within 53° of the equator (geocentric).
		if lat := loc.GetLatitude(); math.IsNaN(lat) || math.Abs(lat) > 53+1e-9 {
			t.Errorf("latitude %v outside ±53", lat)
		}
		if lon := loc.GetLongitude(); !(lon >= -180 && lon < 180) {
			t.Errorf("longitude %v", lon)
		}
		if alt := loc.GetAltitude(); math.Abs(alt-600) > 1e-6 {
			t.Errorf("altitude %v, want 600", alt)
		}
		if loc.GetDeterminedAt() != clock.Now().Unix() {
			t.Errorf("determined_at %d, want %d", loc.GetDeterminedAt(), clock.Now().Unix())
		}
		if !(loc.GetSdLatitude() > 0 && loc.GetSdLongitude() > 0 && loc.GetSdAltitude() > 0) {
			t.Errorf("standard deviations %v %v %v", loc.GetSdLatitude(), loc.GetSdLongitude(), loc.GetSdAltitude())
		}
		if want := orb.At(clock.Now()); loc.GetLatitude() != want.LatitudeDeg || loc.GetLongitude() != want.LongitudeDeg {
			t.Errorf("position %v %v, the orbit says %v %v", loc.GetLatitude(), loc.GetLongitude(), want.LatitudeDeg, want.LongitudeDeg)
		}
		if prev != nil && (prev.GetLatitude() == loc.GetLatitude() || prev.GetLongitude() == loc.GetLongitude()) {
			t.Errorf("position did not move in 10 minutes: %v, %v", prev, loc)
		}
		prev = loc
		clock.Advance(10 * time.Minute)
	}
}

// streamReq are the start and stop requests of a periodic stream.
type streamKind struct {
	name        string
	start, stop func(pc pb.AntarisapiPayloadControllerClient, ctx context.Context, corr, ms int32) (*pb.AntarisReturnType, error)
	startResp   string
	stopResp    string
	data        string
}

var streams = []streamKind{
	{
		name: "gnss",
		start: func(pc pb.AntarisapiPayloadControllerClient, ctx context.Context, corr, ms int32) (*pb.AntarisReturnType, error) {
			return pc.PCGnssEphStartReq(ctx, &pb.ReqGnssEphStartDataReq{CorrelationId: corr, PeriodicityInMs: ms})
		},
		stop: func(pc pb.AntarisapiPayloadControllerClient, ctx context.Context, corr, _ int32) (*pb.AntarisReturnType, error) {
			return pc.PCGnssEphStopReq(ctx, &pb.ReqGnssEphStopDataReq{CorrelationId: corr})
		},
		startResp: "PA_ProcessRespGnssEphStartDataReq", stopResp: "PA_ProcessRespGnssEphStopDataReq", data: "PA_ProcessGnssEphData",
	},
	{
		name: "eps",
		start: func(pc pb.AntarisapiPayloadControllerClient, ctx context.Context, corr, ms int32) (*pb.AntarisReturnType, error) {
			return pc.PCGetEpsVoltageStartReq(ctx, &pb.ReqGetEpsVoltageStartReq{CorrelationId: corr, PeriodicityInMs: ms})
		},
		stop: func(pc pb.AntarisapiPayloadControllerClient, ctx context.Context, corr, _ int32) (*pb.AntarisReturnType, error) {
			return pc.PCGetEpsVoltageStopReq(ctx, &pb.ReqGetEpsVoltageStopReq{CorrelationId: corr})
		},
		startResp: "PA_ProcessRespGetEpsVoltageStartReq", stopResp: "PA_ProcessRespGetEpsVoltageStopReq", data: "PA_ProcessGetEpsVoltage",
	},
}

func reqStatus(c call) int32 {
	return c.Req.(interface{ GetReqStatus() int32 }).GetReqStatus()
}

// TestStreams: start is answered, then data comes every period until
// stop; period 0 sends once; periods under 100 ms or negative are
// refused; stop with none running fails. The other stream is the witness
// that time went on.
func TestStreams(t *testing.T) {
	for i, s := range streams {
		witness := streams[1-i]
		t.Run(s.name, func(t *testing.T) {
			a := newTestApp(t, 1, nil)
			b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
			pc := b.connect(a, nil)
			b.register(a, pc, 1, 0)
			ctx := ctxT(t)
			isData := func(corr int32) func(call) bool {
				return func(c call) bool { return c.Method == s.data && c.corr() == corr }
			}

			// Stop with none running.
			r, err := s.stop(pc, ctx, 10, 0)
			code(t, "stop", r, err, 0)
			if st := reqStatus(a.waitCall(s.stopResp, 10)); st != int32(pb.ReqStatus_Request_failed) {
				t.Errorf("stop with none running: req_status %d", st)
			}

			// Refused periods.
			for j, ms := range []int32{50, 99, -1} {
				corr := int32(20 + j)
				r, err := s.start(pc, ctx, corr, ms)
				code(t, "start", r, err, 0)
				if st := reqStatus(a.waitCall(s.startResp, corr)); st != int32(pb.ReqStatus_Invalid_timer_or_duration_threshold) {
					t.Errorf("period %d ms: req_status %d", ms, st)
				}
			}

			// Periodic: the response, then data with the start's id.
			r, err = s.start(pc, ctx, 30, 100)
			code(t, "start", r, err, 0)
			if st := reqStatus(a.waitCall(s.startResp, 30)); st != 0 {
				t.Errorf("start: req_status %d", st)
			}
			a.waitN(3, isData(30))
			r, err = s.stop(pc, ctx, 31, 0)
			code(t, "stop", r, err, 0)
			if st := reqStatus(a.waitCall(s.stopResp, 31)); st != 0 {
				t.Errorf("stop: req_status %d", st)
			}
			n := a.count(isData(30))
			r, err = witness.start(pc, ctx, 40, 100)
			code(t, "witness start", r, err, 0)
			a.waitN(4, func(c call) bool { return c.Method == witness.data && c.corr() == 40 })
			if m := a.count(isData(30)); m > n+1 {
				t.Errorf("%d data after stop", m-n)
			}

			// Once: the response, then one data message after it.
			r, err = s.start(pc, ctx, 50, 0)
			code(t, "start once", r, err, 0)
			a.waitCall(s.data, 50)
			a.waitN(8, func(c call) bool { return c.Method == witness.data && c.corr() == 40 })
			if n := a.count(isData(50)); n != 1 {
				t.Errorf("period 0 sent %d data messages, want 1", n)
			}
			var order []string
			for _, c := range a.Calls.All() {
				if c.corr() == 50 {
					order = append(order, c.Method)
				}
			}
			if len(order) != 2 || order[0] != s.startResp {
				t.Errorf("period 0: calls %v, want the start response first", order)
			}
			// Sent once, the stream is over.
			r, err = s.stop(pc, ctx, 51, 0)
			code(t, "stop after once", r, err, 0)
			if st := reqStatus(a.waitCall(s.stopResp, 51)); st != int32(pb.ReqStatus_Request_failed) {
				t.Errorf("stop after a period-0 stream: req_status %d, want Request_failed", st)
			}
			// (Close cancels calls in flight: count before.)
			if n := b.count(func(e pi.Event) bool { return e.Kind == pi.EventOut && e.Err != nil }); n != 0 {
				t.Errorf("%d calls to the app failed:\n%s", n, b.eventsText())
			}
		})
	}
}

func TestGnssData(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 6, 7, 8, 9, 10, 500e6, time.UTC)}
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}, Now: clock.Now})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	r, err := pc.PCGnssEphStartReq(ctxT(t), &pb.ReqGnssEphStartDataReq{CorrelationId: 3, PeriodicityInMs: 0})
	code(t, "PC_gnss_eph_start_req", r, err, 0)
	d := a.waitCall("PA_ProcessGnssEphData", 3).Req.(*pb.GnssEphData)
	pos := orbit.Circular{}.At(clock.Now())
	adcs, gps, obc := d.GetAdcsEphData(), d.GetGpsEphData(), d.GetObcTime()
	if adcs.GetEcefPositionX() != pos.ECEF[0] || gps.GetGpsPositionEcefZ() != pos.ECEF[2] || adcs.GetEciVelocityY() != pos.ECIVelocity[1] {
		t.Errorf("ephemeris is not the orbit's position: %v", d)
	}
	if adcs.GetAltitude() != 550 || adcs.GetLatitude() != float32(pos.LatitudeDeg) {
		t.Errorf("adcs lat/alt %v %v", adcs.GetLatitude(), adcs.GetAltitude())
	}
	if obc.GetYear() != 2030 || obc.GetMonth() != 6 || obc.GetDate() != 7 || obc.GetHour() != 8 || obc.GetMinute() != 9 || obc.GetMillisecond() != 10500 {
		t.Errorf("obc_time %v", obc)
	}
	if gps.GetGpsValidityFlagPos() != 1 || adcs.GetValidityFlags() != 1 {
		t.Errorf("validity flags %v %v", gps.GetGpsValidityFlagPos(), adcs.GetValidityFlags())
	}
	a.waitCall("PA_ProcessRespGnssEphStartDataReq", 3)
	eps := func() *pb.GetEpsVoltage {
		r, err := pc.PCGetEpsVoltageStartReq(ctxT(t), &pb.ReqGetEpsVoltageStartReq{CorrelationId: 4})
		code(t, "PC_get_eps_voltage_start_req", r, err, 0)
		return a.waitCall("PA_ProcessGetEpsVoltage", 4).Req.(*pb.GetEpsVoltage)
	}()
	if eps.GetEpsVoltage() != pi.EPSVoltage {
		t.Errorf("eps_voltage %v", eps.GetEpsVoltage())
	}
}

// TestSmallRequests: the requests answered with one response each.
func TestSmallRequests(t *testing.T) {
	a := newTestApp(t, 1, nil)
	b := startBench(t, pi.Config{Apps: []pi.App{a.App()}})
	pc := b.connect(a, nil)
	b.register(a, pc, 1, 0)
	ctx := ctxT(t)

	t.Run("PaSatOsMsg", func(t *testing.T) {
		r, err := pc.PCPaSatosMessage(ctx, &pb.PaSatOsMsg{CorrelationId: 61, CommandId: 1234, PayloadData: []byte("hello")})
		code(t, "PC_pa_satos_message", r, err, 0)
		resp := a.waitCall("PA_ProcessRespPaSatOsMsg", 61).Req.(*pb.RespPaSatOsMsg)
		if resp.GetCommandId() != 1234 || resp.GetReqStatus() != 0 {
			t.Errorf("RespPaSatOsMsg %v", resp)
		}
	})
	t.Run("thermal", func(t *testing.T) {
		for i, tc := range []struct {
			req  *pb.StartSesThermMgmntReq
			want pb.ReqStatus
		}{
			{&pb.StartSesThermMgmntReq{Duration: 10, LowerThreshold: 5, UpperThreshold: 30}, pb.ReqStatus_Request_success},
			{&pb.StartSesThermMgmntReq{Duration: 10, LowerThreshold: 30, UpperThreshold: 30}, pb.ReqStatus_Invalid_temp_threshold},
			{&pb.StartSesThermMgmntReq{Duration: 10, LowerThreshold: 40, UpperThreshold: 30}, pb.ReqStatus_Invalid_temp_threshold},
			{&pb.StartSesThermMgmntReq{Duration: 0, LowerThreshold: 5, UpperThreshold: 30}, pb.ReqStatus_Invalid_timer_or_duration_threshold},
			{&pb.StartSesThermMgmntReq{Duration: -3, LowerThreshold: 5, UpperThreshold: 30}, pb.ReqStatus_Invalid_timer_or_duration_threshold},
		} {
			corr := int32(70 + i)
			tc.req.CorrelationId = corr
			r, err := pc.PCStartSesThermMgmntReq(ctx, tc.req)
			code(t, "PC_start_ses_therm_mgmnt_req", r, err, 0)
			if st := reqStatus(a.waitCall("PA_ProcessRespStartSesThermMgmntReq", corr)); st != int32(tc.want) {
				t.Errorf("%v: req_status %d, want %v", tc.req, st, tc.want)
			}
		}
		r, err := pc.PCStopSesThermMgmntReq(ctx, &pb.StopSesThermMgmntReq{CorrelationId: 79, HardwareId: 1})
		code(t, "PC_stop_ses_therm_mgmnt_req", r, err, 0)
		a.waitCall("PA_ProcessRespStopSesThermMgmntReq", 79)
	})
	t.Run("temperatures", func(t *testing.T) {
		r, err := pc.PCSesTempReq(ctx, &pb.SesTempReq{CorrelationId: 80, HardwareId: 5})
		code(t, "PC_ses_temp_req", r, err, 0)
		ses := a.waitCall("PA_ProcessRespSesTempReq", 80).Req.(*pb.RespSesTempReqParams)
		if ses.GetHardwareId() != 5 || ses.GetTemperature() < -40 || ses.GetTemperature() > 85 || ses.GetStatus() != 0 {
			t.Errorf("RespSesTempReqParams %v", ses)
		}
		r, err = pc.PCPsTempReq(ctx, &pb.PsTempReq{CorrelationId: 81})
		code(t, "PC_ps_temp_req", r, err, 0)
		ps := a.waitCall("PA_ProcessRespPsTemp", 81).Req.(*pb.RespPsTemp)
		if ps.GetTemperature() < -40 || ps.GetTemperature() > 85 {
			t.Errorf("RespPsTemp %v", ps)
		}
	})
	t.Run("not implemented or ignored", func(t *testing.T) {
		r, err := pc.PCHostToPeerFcmOperation(ctx, &pb.HostToPeerFcmOperation{CorrelationId: 90, PeerAppId: 2})
		code(t, "PC_host_to_peer_fcm_operation", r, err, pb.AntarisReturnCode_An_NOT_IMPLEMENTED)
		r, err = pc.PCSatosPaMessage(ctx, &pb.RespSatOsPaMsg{CorrelationId: 91})
		code(t, "PC_satos_pa_message", r, err, 0)
		r, err = pc.PCResponsePayloadMetrics(ctx, &pb.PayloadMetricsResponse{CorrelationId: 92, Metrics: []*pb.PayloadMetricsInfo{{Counter: 1, Names: "x"}}})
		code(t, "PC_response_payload_metrics", r, err, 0)
		r, err = pc.PCResponseHealthCheck(ctx, &pb.RespHealthCheckParams{CorrelationId: 93})
		code(t, "PC_response_health_check (unasked)", r, err, 0)
	})
	b.Close()
	for _, c := range a.Calls.All() {
		if c.corr() >= 90 {
			t.Errorf("a response to a request that has none: %s %v", c.Method, c.Req)
		}
	}
}
