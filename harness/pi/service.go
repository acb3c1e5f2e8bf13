package pi

import (
	"context"
	"fmt"
	"math"
	"net"
	"path"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/satbench/hil/harness/orbit"
	pb "github.com/satbench/hil/harness/pi/antarispb"
)

// StartSequence asks board's app to start sequence id with params, to be
// done by deadline. It returns once the app answered; the sequence's end
// (or its overrun) is an event. An app that refuses answers a *CodeError.
func (c *Controller) StartSequence(ctx context.Context, board, id, params string, deadline time.Time) error {
	p, err := c.peer(board)
	if err != nil {
		return err
	}
	switch {
	case id == "" || len(id) > maxSequenceID:
		return fmt.Errorf("pi: sequence id %q: want 1 to %d bytes", id, maxSequenceID)
	case len(params) > maxSequenceParams:
		return fmt.Errorf("pi: sequence %s: params are %d bytes; want at most %d", id, len(params), maxSequenceParams)
	}
	return p.startSequence(ctx, id, params, deadline)
}

// Shutdown asks board's app to shut down within grace and waits for its
// PC_response_shutdown. It returns ErrNoShutdownAnswer (wrapped) if none
// came within grace: the caller then powers the payload off anyway.
func (c *Controller) Shutdown(ctx context.Context, board string, grace time.Duration) error {
	p, err := c.peer(board)
	if err != nil {
		return err
	}
	corr := c.nextCorr()
	resp, done := p.expect(waitKey{"PC_response_shutdown", corr})
	defer done()
	secs := int32(math.Ceil(grace.Seconds()))
	start := c.cfg.Now()
	code, err := p.call(ctx, "PA_ShutdownApp", corr, true, fmt.Sprintf("grace_time=%d", secs), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ShutdownApp(ctx, &pb.ShutdownParams{CorrelationId: corr, GraceTime: secs})
	})
	if err == nil && code != 0 {
		err = &CodeError{Op: "PA_ShutdownApp", Code: pb.AntarisReturnCode(code)}
	}
	if err != nil {
		return fmt.Errorf("pi: shutdown of the app on board %s: %w", board, err)
	}
	// The grace time runs from the app's answer to the request, so that
	// an app is never given less than it was told, however slow the call.
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-resp:
		c.emit(Event{Board: board, Kind: EventShutdown, Corr: corr, HasCorr: true,
			Detail: fmt.Sprintf("after %v, within the grace time %v", c.cfg.Now().Sub(start).Round(time.Millisecond), grace)})
		return nil
	case <-t.C:
		return fmt.Errorf("pi: board %s: %w %v", board, ErrNoShutdownAnswer, grace)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// peerKey carries the calling app's peer in a request's context.
type peerKey struct{}

// intercept authenticates every call by its cookie, records it as an
// event and keeps a handler's panic from taking the bus down.
func (c *Controller) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	c.stats.calls.Add(1)
	method := path.Base(info.FullMethod)
	corr, hasCorr := corrOf(req)
	p, why := c.authenticate(ctx)
	if p == nil {
		c.emit(Event{Kind: EventRefused, Method: method, Corr: corr, HasCorr: hasCorr, Detail: why})
		return nil, status.Error(codes.Unauthenticated, "hil payload controller: "+why)
	}
	ev := Event{Board: p.app.Board, Kind: EventIn, Method: method, Corr: corr, HasCorr: hasCorr, Detail: describe(req)}
	defer func() {
		if r := recover(); r != nil {
			c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: method, Corr: corr, HasCorr: hasCorr,
				Detail: fmt.Sprintf("the controller failed on this request (a bug in hil): %v\n%s", r, debug.Stack())})
			resp, err = nil, status.Errorf(codes.Internal, "hil payload controller: internal error on %s", method)
		}
	}()
	if method != "PC_register" && !p.registered() {
		ev.Code = int32(pb.AntarisReturnCode_An_NOT_PERMITTED)
		ev.Detail += " (refused: the app has not registered; PC_register comes first)"
		c.emit(ev)
		return &pb.AntarisReturnType{ReturnCode: pb.AntarisReturnCode_An_NOT_PERMITTED}, nil
	}
	ctx = context.WithValue(ctx, peerKey{}, p)
	resp, err = handler(ctx, req)
	if r, ok := resp.(*pb.AntarisReturnType); ok {
		ev.Code = int32(r.GetReturnCode())
	}
	c.emit(ev)
	return resp, err
}

// authenticate finds the app whose key the call's cookie carries, or says
// why there is none.
func (c *Controller) authenticate(ctx context.Context) (*peer, string) {
	md, _ := metadata.FromIncomingContext(ctx)
	from := "an unknown address"
	if pr, ok := grpcpeer.FromContext(ctx); ok {
		from = pr.Addr.String()
	}
	vals := md.Get("cookie")
	if len(vals) == 0 {
		return nil, fmt.Sprintf("call from %s has no cookie metadata; want cookie: <20-character auth key><3-digit app id>, from the app's /opt/antaris/app/config.json", from)
	}
	cookie := vals[0]
	if len(cookie) != 20 && len(cookie) != 23 {
		return nil, fmt.Sprintf("call from %s has a cookie of %d characters; want 23 (the 20-character auth key and a 3-digit app id) or the 20-character key alone", from, len(cookie))
	}
	p := c.keys[cookie[:20]]
	if p == nil {
		return nil, fmt.Sprintf("call from %s has a cookie whose auth key %q is no board's payload_interface.key on this bench", from, redact(cookie[:20]))
	}
	if len(cookie) == 23 && cookie != p.app.Cookie() {
		return nil, fmt.Sprintf("call from %s carries board %s's auth key with app id %q; the board's app id is %03d", from, p.app.Board, cookie[20:], p.app.AppID)
	}
	return p, ""
}

// redact shows enough of a key to tell which it is, not all of it.
func redact(key string) string {
	if len(key) <= 4 {
		return key
	}
	return key[:4] + strings.Repeat("*", len(key)-4)
}

func corrOf(req any) (int32, bool) {
	if m, ok := req.(interface{ GetCorrelationId() int32 }); ok {
		return m.GetCorrelationId(), true
	}
	return 0, false
}

// describe is a request's fields on one line, bounded.
func describe(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	s := prototext.MarshalOptions{}.Format(m)
	s = strings.Join(strings.Fields(s), " ")
	const max = 300
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// service implements the PC's gRPC service; intercept has already
// authenticated each call and put its peer in the context.
type service struct {
	pb.UnimplementedAntarisapiPayloadControllerServer
	c *Controller
}

func peerOf(ctx context.Context) *peer { return ctx.Value(peerKey{}).(*peer) }

func ret(code pb.AntarisReturnCode) (*pb.AntarisReturnType, error) {
	return &pb.AntarisReturnType{ReturnCode: code}, nil
}

// invalid answers a request with a malformed field: An_INVALID_PARAMS and
// an event saying which field and what would be right.
func (s *service) invalid(p *peer, method string, corr int32, format string, args ...any) (*pb.AntarisReturnType, error) {
	s.c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: method, Corr: corr, HasCorr: true, Detail: fmt.Sprintf(format, args...)})
	return ret(pb.AntarisReturnCode_An_INVALID_PARAMS)
}

func (s *service) PCRegister(ctx context.Context, req *pb.ReqRegisterParams) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	if a := req.GetHealthCheckFailAction(); a != 0 && a != 1 {
		return s.invalid(p, "PC_register", corr, "health_check_fail_action %d: want 0 (none) or 1 (reboot after %d failed health checks)", a, s.c.cfg.HealthFailures)
	}
	var addr net.Addr = &net.TCPAddr{}
	if pr, ok := grpcpeer.FromContext(ctx); ok {
		addr = pr.Addr
	}
	callback, err := p.register(req, addr)
	if err != nil {
		s.c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: "PC_register", Corr: corr, HasCorr: true, Detail: err.Error()})
		return ret(pb.AntarisReturnCode_An_GENERIC_FAILURE)
	}
	v := req.GetSdkVersion()
	s.c.emit(Event{Board: p.app.Board, Kind: EventRegistered, Corr: corr, HasCorr: true, Detail: fmt.Sprintf(
		"app %03d, SDK %d.%d.%d, health_check_fail_action %d, callback %s", p.app.AppID, v.GetMajor(), v.GetMinor(), v.GetPatch(), req.GetHealthCheckFailAction(), callback)})
	token := newToken()
	return ret(p.respond("PA_ProcessResponseRegister", corr, "req_status=0", func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessResponseRegister(ctx, &pb.RespRegisterParams{CorrelationId: corr, ReqStatus: 0, AuthToken: token})
	}))
}

func (s *service) PCGetCurrentLocation(ctx context.Context, req *pb.ReqGetCurrentLocationParams) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	pos := s.c.cfg.Orbit.At(s.c.cfg.Now())
	detail := fmt.Sprintf("latitude=%.4f longitude=%.4f altitude=%.1f", pos.LatitudeDeg, pos.LongitudeDeg, pos.AltitudeKm)
	return ret(p.respond("PA_ProcessResponseGetCurrentLocation", corr, detail, func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessResponseGetCurrentLocation(ctx, &pb.RespGetCurrentLocationParams{
			CorrelationId: corr, ReqStatus: 0,
			Latitude: pos.LatitudeDeg, Longitude: pos.LongitudeDeg, Altitude: pos.AltitudeKm,
			SdLatitude: 0.001, SdLongitude: 0.001, SdAltitude: 0.01,
			DeterminedAt: pos.Time.Unix(),
		})
	}))
}

func (s *service) PCStageFileDownload(ctx context.Context, req *pb.ReqStageFileDownloadParams) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	failed := func() {
		p.respond("PA_ProcessResponseStageFileDownload", corr, "req_status=1", func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
			return cl.PA_ProcessResponseStageFileDownload(ctx, &pb.RespStageFileDownloadParams{CorrelationId: corr, ReqStatus: int32(pb.ReqStatus_Request_failed)})
		})
	}
	rel := req.GetFilePath()
	full, err := OutboundPath(rel)
	if err != nil {
		failed()
		return s.invalid(p, "PC_stage_file_download", corr, "%v; nothing was read", err)
	}
	if pr := req.GetFilePriority(); pr < 0 || pr > pb.FilePriorities_FILE_DL_PRIORITY_IMMEDIATE {
		failed()
		return s.invalid(p, "PC_stage_file_download", corr, "file_priority %d: want 0 (low) to 3 (immediate)", int32(pr))
	}
	if b := req.GetFileDlBand(); b != pb.FileDlRadioType_FILE_DL_SBAND && b != pb.FileDlRadioType_FILE_DL_XBAND {
		failed()
		return s.invalid(p, "PC_stage_file_download", corr, "file_dl_band %d: want 0 (S band) or 1 (X band)", int32(b))
	}
	if s.c.cfg.Stage == nil {
		return ret(pb.AntarisReturnCode_An_NOT_IMPLEMENTED)
	}
	select {
	case p.stage <- struct{}{}:
	default:
		s.c.stats.dropped.Add(1)
		s.c.emit(Event{Board: p.app.Board, Kind: EventDropped, Method: "PC_stage_file_download", Corr: corr, HasCorr: true,
			Detail: fmt.Sprintf("%d files are being staged already; try again later", stagers)})
		return ret(pb.AntarisReturnCode_An_OUT_OF_RESOURCES)
	}
	r := StageRequest{Board: p.app.Board, Path: full, Rel: rel, Priority: req.GetFilePriority(), Band: req.GetFileDlBand(), Corr: corr}
	_, regCtx, err := p.registration()
	if err != nil {
		// Forgotten since the interceptor looked: there is no
		// registration for the fetch to run in (and no nil context for
		// Stage).
		<-p.stage
		return ret(pb.AntarisReturnCode_An_NOT_PERMITTED)
	}
	s.c.wg.Go(func() {
		defer func() { <-p.stage }()
		err := s.c.cfg.Stage(regCtx, r)
		st := pb.ReqStatus_Request_success
		if err != nil {
			st = pb.ReqStatus_Request_failed
			s.c.emit(Event{Board: p.app.Board, Kind: EventStageFailed, Corr: corr, HasCorr: true, Detail: fmt.Sprintf("%s: %v", full, err)})
		} else {
			s.c.emit(Event{Board: p.app.Board, Kind: EventStaged, Corr: corr, HasCorr: true, Detail: full + " queued for downlink"})
		}
		p.respond("PA_ProcessResponseStageFileDownload", corr, fmt.Sprintf("req_status=%d", st), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
			return cl.PA_ProcessResponseStageFileDownload(ctx, &pb.RespStageFileDownloadParams{CorrelationId: corr, ReqStatus: int32(st)})
		})
	})
	return ret(pb.AntarisReturnCode_An_SUCCESS)
}

func (s *service) PCSequenceDone(ctx context.Context, req *pb.CmdSequenceDoneParams) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	if !p.sequenceDone(req.GetSequenceId()) {
		s.c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: "PC_sequence_done",
			Detail: fmt.Sprintf("sequence %q is not running: the bus did not start it, or it is already done", req.GetSequenceId())})
		return ret(pb.AntarisReturnCode_An_INVALID_SEQUENCE)
	}
	return ret(pb.AntarisReturnCode_An_SUCCESS)
}

func (s *service) PCPayloadPowerControl(ctx context.Context, req *pb.ReqPayloadPowerControlParams) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr, op, hw := req.GetCorrelationId(), req.GetPowerOperation(), req.GetHwId()
	answer := func(st pb.ReqStatus) {
		p.respond("PA_ProcessResponsePayloadPowerControl", corr, fmt.Sprintf("req_status=%d", st), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
			return cl.PA_ProcessResponsePayloadPowerControl(ctx, &pb.RespPayloadPowerControlParams{CorrelationId: corr, ReqStatus: int32(st)})
		})
	}
	if op != 0 && op != 1 {
		answer(pb.ReqStatus_Request_failed)
		return s.invalid(p, "PC_payload_power_control", corr, "power_operation %d: want 0 (off) or 1 (on)", op)
	}
	pw := s.c.cfg.Hardware[hw]
	if pw == nil {
		s.c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: "PC_payload_power_control", Corr: corr, HasCorr: true,
			Detail: fmt.Sprintf("hw_id %d switches nothing on this bench (a board's payload_interface.hw_id names its power); answered Invalid_hw_id", hw)})
		answer(pb.ReqStatus_Invalid_hw_id)
		return ret(pb.AntarisReturnCode_An_SUCCESS)
	}
	if !s.c.powerBusy(hw, true) {
		answer(pb.ReqStatus_Another_req_in_progress)
		return ret(pb.AntarisReturnCode_An_SUCCESS)
	}
	s.c.wg.Go(func() {
		defer s.c.powerBusy(hw, false)
		ctx, cancel := context.WithTimeout(s.c.ctx, 30*time.Second)
		defer cancel()
		var err error
		what := "off"
		if op == 1 {
			what = "on"
			err = pw.On(ctx)
		} else {
			err = pw.Off(ctx)
		}
		st := pb.ReqStatus_Request_success
		if err != nil {
			st = pb.ReqStatus_Request_failed
		}
		s.c.emit(Event{Board: p.app.Board, Kind: EventPower, Corr: corr, HasCorr: true, Detail: fmt.Sprintf("hw_id %d %s %s", hw, what, errText(err))})
		answer(st)
	})
	return ret(pb.AntarisReturnCode_An_SUCCESS)
}

func (s *service) PCResponseHealthCheck(ctx context.Context, req *pb.RespHealthCheckParams) (*pb.AntarisReturnType, error) {
	// A response to a check already decided (or never sent) is recorded
	// by the interceptor and otherwise ignored.
	peerOf(ctx).deliver(waitKey{"PC_response_health_check", req.GetCorrelationId()}, req.GetApplicationState())
	return ret(pb.AntarisReturnCode_An_SUCCESS)
}

func (s *service) PCResponseShutdown(ctx context.Context, req *pb.RespShutdownParams) (*pb.AntarisReturnType, error) {
	peerOf(ctx).deliver(waitKey{"PC_response_shutdown", req.GetCorrelationId()}, req.GetReqStatus())
	return ret(pb.AntarisReturnCode_An_SUCCESS)
}

func (s *service) PCResponsePayloadMetrics(ctx context.Context, req *pb.PayloadMetricsResponse) (*pb.AntarisReturnType, error) {
	return ret(pb.AntarisReturnCode_An_SUCCESS)
}

// streamPeriod checks a stream's periodicity_in_ms, returning the
// ReqStatus to answer with.
func (s *service) streamPeriod(p *peer, method string, corr, ms int32) (time.Duration, pb.ReqStatus) {
	d := time.Duration(ms) * time.Millisecond
	if ms < 0 || (d > 0 && d < minStreamPeriod) {
		s.c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: method, Corr: corr, HasCorr: true,
			Detail: fmt.Sprintf("periodicity_in_ms %d: want 0 (once) or at least %d; answered Invalid_timer_or_duration_threshold", ms, minStreamPeriod.Milliseconds())})
		return 0, pb.ReqStatus_Invalid_timer_or_duration_threshold
	}
	return d, pb.ReqStatus_Request_success
}

// startStream answers a stream's start request (respMethod, made by
// resp) and, if it is accepted, starts the stream kind once that answer is
// sent: send runs every periodicity_in_ms.
func (s *service) startStream(p *peer, kind, method, respMethod string, corr, ms int32, resp func(pb.ReqStatus) callFunc, send func()) pb.AntarisReturnCode {
	period, st := s.streamPeriod(p, method, corr, ms)
	sent := make(chan struct{})
	code := p.respondThen(respMethod, corr, fmt.Sprintf("req_status=%d", st), resp(st), func() { close(sent) })
	if code == pb.AntarisReturnCode_An_SUCCESS && st == pb.ReqStatus_Request_success {
		p.stream(kind, period, sent, send)
	}
	return code
}

// stopStream stops the stream kind and answers with respMethod (made by
// resp): Request_failed if none was running.
func (s *service) stopStream(p *peer, kind, respMethod string, corr int32, resp func(pb.ReqStatus) callFunc) pb.AntarisReturnCode {
	st := pb.ReqStatus_Request_success
	if !p.stopStream(kind) {
		st = pb.ReqStatus_Request_failed
	}
	return p.respond(respMethod, corr, fmt.Sprintf("req_status=%d", st), resp(st))
}

func (s *service) PCGnssEphStartReq(ctx context.Context, req *pb.ReqGnssEphStartDataReq) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	return ret(s.startStream(p, "gnss", "PC_gnss_eph_start_req", "PA_ProcessRespGnssEphStartDataReq", corr, req.GetPeriodicityInMs(),
		func(st pb.ReqStatus) callFunc {
			return func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
				return cl.PA_ProcessRespGnssEphStartDataReq(ctx, &pb.RespGnssEphStartDataReq{CorrelationId: corr, ReqStatus: int32(st)})
			}
		},
		func() {
			pos := s.c.cfg.Orbit.At(s.c.cfg.Now())
			p.respond("PA_ProcessGnssEphData", corr, fmt.Sprintf("latitude=%.4f longitude=%.4f", pos.LatitudeDeg, pos.LongitudeDeg), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
				return cl.PA_ProcessGnssEphData(ctx, gnssData(corr, pos))
			})
		}))
}

func (s *service) PCGnssEphStopReq(ctx context.Context, req *pb.ReqGnssEphStopDataReq) (*pb.AntarisReturnType, error) {
	corr := req.GetCorrelationId()
	return ret(s.stopStream(peerOf(ctx), "gnss", "PA_ProcessRespGnssEphStopDataReq", corr, func(st pb.ReqStatus) callFunc {
		return func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
			return cl.PA_ProcessRespGnssEphStopDataReq(ctx, &pb.RespGnssEphStopDataReq{CorrelationId: corr, ReqStatus: int32(st)})
		}
	}))
}

// EPSVoltage is the bus voltage the EPS stream reports.
const EPSVoltage = 28.0

func (s *service) PCGetEpsVoltageStartReq(ctx context.Context, req *pb.ReqGetEpsVoltageStartReq) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	return ret(s.startStream(p, "eps", "PC_get_eps_voltage_start_req", "PA_ProcessRespGetEpsVoltageStartReq", corr, req.GetPeriodicityInMs(),
		func(st pb.ReqStatus) callFunc {
			return func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
				return cl.PA_ProcessRespGetEpsVoltageStartReq(ctx, &pb.RespGetEpsVoltageStartReq{CorrelationId: corr, ReqStatus: int32(st)})
			}
		},
		func() {
			p.respond("PA_ProcessGetEpsVoltage", corr, fmt.Sprintf("eps_voltage=%.1f", EPSVoltage), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
				return cl.PA_ProcessGetEpsVoltage(ctx, &pb.GetEpsVoltage{CorrelationId: corr, EpsVoltage: EPSVoltage})
			})
		}))
}

func (s *service) PCGetEpsVoltageStopReq(ctx context.Context, req *pb.ReqGetEpsVoltageStopReq) (*pb.AntarisReturnType, error) {
	corr := req.GetCorrelationId()
	return ret(s.stopStream(peerOf(ctx), "eps", "PA_ProcessRespGetEpsVoltageStopReq", corr, func(st pb.ReqStatus) callFunc {
		return func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
			return cl.PA_ProcessRespGetEpsVoltageStopReq(ctx, &pb.RespGetEpsVoltageStopReq{CorrelationId: corr, ReqStatus: int32(st)})
		}
	}))
}

// The simulated thermal readings: a bench has no heaters to read.
const (
	sesTemperature = 20 // °C
	psTemperature  = 25 // °C
)

func (s *service) PCStartSesThermMgmntReq(ctx context.Context, req *pb.StartSesThermMgmntReq) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	st := pb.ReqStatus_Request_success
	switch {
	case req.GetDuration() <= 0:
		st = pb.ReqStatus_Invalid_timer_or_duration_threshold
		s.c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: "PC_start_ses_therm_mgmnt_req", Corr: corr, HasCorr: true,
			Detail: fmt.Sprintf("duration %d: want more than 0; answered Invalid_timer_or_duration_threshold", req.GetDuration())})
	case req.GetLowerThreshold() >= req.GetUpperThreshold():
		st = pb.ReqStatus_Invalid_temp_threshold
		s.c.emit(Event{Board: p.app.Board, Kind: EventInvalid, Method: "PC_start_ses_therm_mgmnt_req", Corr: corr, HasCorr: true,
			Detail: fmt.Sprintf("lower_threshold %d is not below upper_threshold %d; answered Invalid_temp_threshold", req.GetLowerThreshold(), req.GetUpperThreshold())})
	}
	return ret(p.respond("PA_ProcessRespStartSesThermMgmntReq", corr, fmt.Sprintf("req_status=%d", st), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessRespStartSesThermMgmntReq(ctx, &pb.RespStartSesThermMgmntReq{CorrelationId: corr, ReqStatus: int32(st)})
	}))
}

func (s *service) PCStopSesThermMgmntReq(ctx context.Context, req *pb.StopSesThermMgmntReq) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	return ret(p.respond("PA_ProcessRespStopSesThermMgmntReq", corr, "req_status=0", func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessRespStopSesThermMgmntReq(ctx, &pb.RespStopSesThermMgmntReq{CorrelationId: corr})
	}))
}

func (s *service) PCSesTempReq(ctx context.Context, req *pb.SesTempReq) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr, hw := req.GetCorrelationId(), req.GetHardwareId()
	return ret(p.respond("PA_ProcessRespSesTempReq", corr, fmt.Sprintf("temperature=%d", sesTemperature), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessRespSesTempReq(ctx, &pb.RespSesTempReqParams{CorrelationId: corr, Temperature: sesTemperature, HardwareId: hw})
	}))
}

func (s *service) PCPsTempReq(ctx context.Context, req *pb.PsTempReq) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr := req.GetCorrelationId()
	return ret(p.respond("PA_ProcessRespPsTemp", corr, fmt.Sprintf("temperature=%d", psTemperature), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessRespPsTemp(ctx, &pb.RespPsTemp{CorrelationId: corr, Temperature: psTemperature})
	}))
}

func (s *service) PCPaSatosMessage(ctx context.Context, req *pb.PaSatOsMsg) (*pb.AntarisReturnType, error) {
	p := peerOf(ctx)
	corr, cmd := req.GetCorrelationId(), req.GetCommandId()
	return ret(p.respond("PA_ProcessRespPaSatOsMsg", corr, fmt.Sprintf("command_id=%d req_status=0", cmd), func(ctx context.Context, cl pb.AntarisapiApplicationCallbackClient) (*pb.AntarisReturnType, error) {
		return cl.PA_ProcessRespPaSatOsMsg(ctx, &pb.RespPaSatOsMsg{CorrelationId: corr, CommandId: cmd})
	}))
}

// PCHostToPeerFcmOperation is a file copy between apps on one payload
// computer; a bench has one app per board, so there is no peer to copy to.
func (s *service) PCHostToPeerFcmOperation(ctx context.Context, req *pb.HostToPeerFcmOperation) (*pb.AntarisReturnType, error) {
	return ret(pb.AntarisReturnCode_An_NOT_IMPLEMENTED)
}

func (s *service) PCSatosPaMessage(ctx context.Context, req *pb.RespSatOsPaMsg) (*pb.AntarisReturnType, error) {
	return ret(pb.AntarisReturnCode_An_SUCCESS)
}

// powerBusy marks hw as being switched (busy true), returning false if it
// already was; busy false clears the mark.
func (c *Controller) powerBusy(hw int32, busy bool) bool {
	c.powerMu.Lock()
	defer c.powerMu.Unlock()
	if c.powering == nil {
		c.powering = map[int32]bool{}
	}
	if busy && c.powering[hw] {
		return false
	}
	c.powering[hw] = busy
	return true
}

// gnssData is one GNSS ephemeris message at pos.
func gnssData(corr int32, pos orbit.Position) *pb.GnssEphData {
	t := obcTime(pos.Time)
	return &pb.GnssEphData{
		CorrelationId: corr,
		AdcsEphData: &pb.AdcsEphemerisData{
			OrbitTime:    float64(pos.Time.UnixMilli()) / 1000,
			EciPositionX: pos.ECI[0], EciPositionY: pos.ECI[1], EciPositionZ: pos.ECI[2],
			EciVelocityX: pos.ECIVelocity[0], EciVelocityY: pos.ECIVelocity[1], EciVelocityZ: pos.ECIVelocity[2],
			EcefPositionX: pos.ECEF[0], EcefPositionY: pos.ECEF[1], EcefPositionZ: pos.ECEF[2],
			EcefVelocityX: pos.ECEFVelocity[0], EcefVelocityY: pos.ECEFVelocity[1], EcefVelocityZ: pos.ECEFVelocity[2],
			AttQuat_1: 1,
			Latitude:  float32(pos.LatitudeDeg), Longitude: float32(pos.LongitudeDeg), Altitude: float32(pos.AltitudeKm),
			ValidityFlags: 1,
		},
		GpsEphData: &pb.GpsEphemerisData{
			GpsFixTime: t, GpsSysTime: t,
			GpsPositionEcefX: pos.ECEF[0], GpsPositionEcefY: pos.ECEF[1], GpsPositionEcefZ: pos.ECEF[2],
			GpsVelocityEcefX: pos.ECEFVelocity[0], GpsVelocityEcefY: pos.ECEFVelocity[1], GpsVelocityEcefZ: pos.ECEFVelocity[2],
			GpsValidityFlagPos: 1, GpsValidityFlagVel: 1,
		},
		ObcTime: t,
	}
}

func obcTime(t time.Time) *pb.OBCTime {
	t = t.UTC()
	return &pb.OBCTime{
		Hour: int32(t.Hour()), Minute: int32(t.Minute()),
		Millisecond: int32(t.Second()*1000 + t.Nanosecond()/1e6),
		Date:        int32(t.Day()), Month: int32(t.Month()), Year: int32(t.Year()),
	}
}
