package pi_test

import (
	"context"
	"fmt"
	"net"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/satbench/hil/harness/pi"
	pb "github.com/satbench/hil/harness/pi/antarispb"
	"github.com/satbench/hil/harness/power"
)

// pcMethod is one method of the controller's service, from the file
// descriptor: its full name and request type.
type pcMethod struct {
	name, full string
	req        protoreflect.MessageType
}

// pcMethods are the controller's methods in declaration order.
func pcMethods(t testing.TB) []pcMethod {
	t.Helper()
	sd := pb.File_antaris_api_proto.Services().ByName("AntarisapiPayloadController")
	var ms []pcMethod
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, pcMethod{name: string(md.Name()), full: fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()), req: mt})
	}
	return ms
}

// fuzzSeeds are valid requests of each method, and some at the edges.
var fuzzSeeds = map[string][]proto.Message{
	"PC_register": {
		&pb.ReqRegisterParams{CorrelationId: 1, HealthCheckFailAction: 0, SdkVersion: &pb.AntarisSdkVersion{Major: 0, Minor: 1}},
		&pb.ReqRegisterParams{CorrelationId: 2, HealthCheckFailAction: 1},
		&pb.ReqRegisterParams{CorrelationId: -1, HealthCheckFailAction: 2},
	},
	"PC_get_current_location": {
		&pb.ReqGetCurrentLocationParams{CorrelationId: 3},
		&pb.ReqGetCurrentLocationParams{CorrelationId: 1 << 30},
	},
	"PC_stage_file_download": {
		&pb.ReqStageFileDownloadParams{CorrelationId: 4, FilePath: "a/b.bin", FilePriority: 1},
		&pb.ReqStageFileDownloadParams{CorrelationId: 5, FilePath: "x.bin", FilePriority: 3, FileDlBand: 1},
		&pb.ReqStageFileDownloadParams{CorrelationId: 6, FilePath: "../x"},
		&pb.ReqStageFileDownloadParams{CorrelationId: 7, FilePath: "fail.bin"},
	},
	"PC_sequence_done": {
		&pb.CmdSequenceDoneParams{SequenceId: "location"},
		&pb.CmdSequenceDoneParams{},
	},
	"PC_payload_power_control": {
		&pb.ReqPayloadPowerControlParams{CorrelationId: 8, PowerOperation: 1, HwId: 1},
		&pb.ReqPayloadPowerControlParams{CorrelationId: 9, PowerOperation: 0, HwId: 1},
		&pb.ReqPayloadPowerControlParams{CorrelationId: 10, PowerOperation: 0, HwId: 2},
		&pb.ReqPayloadPowerControlParams{CorrelationId: 11, PowerOperation: 7},
	},
	"PC_response_health_check": {
		&pb.RespHealthCheckParams{CorrelationId: 12},
		&pb.RespHealthCheckParams{CorrelationId: 13, ApplicationState: 1, ReqsToPcInErrCnt: 2, RespsToPcInErrCnt: 3},
	},
	"PC_response_shutdown": {
		&pb.RespShutdownParams{CorrelationId: 14},
	},
	"PC_response_payload_metrics": {
		&pb.PayloadMetricsResponse{CorrelationId: 15, Timestamp: 1700000000, UsedCounter: 1, Metrics: []*pb.PayloadMetricsInfo{{Counter: 3, Names: "frames"}}},
	},
	"PC_gnss_eph_stop_req": {
		&pb.ReqGnssEphStopDataReq{CorrelationId: 16},
	},
	"PC_gnss_eph_start_req": {
		&pb.ReqGnssEphStartDataReq{CorrelationId: 17, PeriodicityInMs: 1000, Eph2Enable: 1},
		&pb.ReqGnssEphStartDataReq{CorrelationId: 18},
		&pb.ReqGnssEphStartDataReq{CorrelationId: 19, PeriodicityInMs: -1},
	},
	"PC_get_eps_voltage_stop_req": {
		&pb.ReqGetEpsVoltageStopReq{CorrelationId: 20},
	},
	"PC_get_eps_voltage_start_req": {
		&pb.ReqGetEpsVoltageStartReq{CorrelationId: 21, PeriodicityInMs: 500},
		&pb.ReqGetEpsVoltageStartReq{CorrelationId: 22, PeriodicityInMs: 0},
	},
	"PC_start_ses_therm_mgmnt_req": {
		&pb.StartSesThermMgmntReq{CorrelationId: 23, HardwareId: 1, Duration: 60, LowerThreshold: 5, UpperThreshold: 40},
		&pb.StartSesThermMgmntReq{CorrelationId: 24, LowerThreshold: 40, UpperThreshold: 5},
	},
	"PC_stop_ses_therm_mgmnt_req": {
		&pb.StopSesThermMgmntReq{CorrelationId: 25, HardwareId: 1},
	},
	"PC_ses_temp_req": {
		&pb.SesTempReq{CorrelationId: 26, HardwareId: 1},
	},
	"PC_ps_temp_req": {
		&pb.PsTempReq{CorrelationId: 27},
	},
	"PC_pa_satos_message": {
		&pb.PaSatOsMsg{CorrelationId: 28, CommandId: 5, PayloadData: []byte{1, 2, 3}},
	},
	"PC_host_to_peer_fcm_operation": {
		&pb.HostToPeerFcmOperation{CorrelationId: 29, PeerAppId: 2, NoOfFiles: 1, FileInput: []*pb.FileInput{{FilenameLength: 5, Filename: []byte("a.bin")}}},
	},
	"PC_satos_pa_message": {
		&pb.RespSatOsPaMsg{CorrelationId: 30, AppId: 101, CommandId: 5},
	},
}

// fuzzEnv is one controller, with a registered app, serving a fuzzing
// worker's inputs one after the other.
type fuzzEnv struct {
	methods []pcMethod
	conn    *grpc.ClientConn
	cookie  string
	mu      sync.Mutex
	bugs    []string // what the controller got wrong, from its events and Stage
}

func (env *fuzzEnv) bug(format string, args ...any) {
	env.mu.Lock()
	defer env.mu.Unlock()
	if len(env.bugs) < 10 {
		env.bugs = append(env.bugs, fmt.Sprintf(format, args...))
	}
}

func (env *fuzzEnv) takeBugs() []string {
	env.mu.Lock()
	defer env.mu.Unlock()
	b := env.bugs
	env.bugs = nil
	return b
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	env := &fuzzEnv{methods: pcMethods(f)}
	a := newTestApp(f, 1, nil)
	a.quiet.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	c, err := pi.Start(pi.Config{
		Listener:       ln,
		Apps:           []pi.App{a.App()},
		HealthInterval: 100 * time.Millisecond,
		CallTimeout:    2 * time.Second,
		Hardware:       map[int32]power.Power{1: payloadPower(f)},
		Notify: func(e pi.Event) {
			if strings.Contains(e.Detail, "a bug in hil") {
				env.bug("%s", e)
			}
		},
		Stage: func(ctx context.Context, r pi.StageRequest) error {
			if !strings.HasPrefix(r.Path, pi.OutboundDir+"/") || path.Clean(r.Path) != r.Path || strings.Contains(r.Path, "\x00") {
				env.bug("Stage asked for %q (file_path %q), not a clean path inside %s", r.Path, r.Rel, pi.OutboundDir)
			}
			if strings.Contains(r.Rel, "fail") {
				return fmt.Errorf("no such file")
			}
			return nil
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	env.conn, err = grpc.NewClient(c.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { env.conn.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "cookie", a.Cookie())
	var reply pb.AntarisReturnType
	if err := env.conn.Invoke(ctx, "/antaris_api_peer_to_peer.AntarisapiPayloadController/PC_register", &pb.ReqRegisterParams{CorrelationId: 1}, &reply); err != nil {
		f.Fatal(err)
	}
	env.cookie = a.Cookie()
	return env
}

// FuzzPCRequests sends the controller, through a real gRPC client with a
// valid cookie, a request of the method the first byte picks, made of the
// rest. Whatever the request, the controller answers in time with a
// return code of the contract and no gRPC error, does not fail (panic),
// and gives Stage only clean paths inside the outbound directory.
func FuzzPCRequests(f *testing.F) {
	env := newFuzzEnv(f)
	for i, m := range env.methods {
		seeds := fuzzSeeds[m.name]
		if len(seeds) == 0 {
			f.Fatalf("no seed for %s", m.name)
		}
		for _, s := range seeds {
			b, err := proto.Marshal(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(append([]byte{byte(i)}, b...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		m := env.methods[int(data[0])%len(env.methods)]
		req := m.req.New().Interface()
		if err := proto.Unmarshal(data[1:], req); err != nil {
			t.Skip()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "cookie", env.cookie)
		var reply pb.AntarisReturnType
		if err := env.conn.Invoke(ctx, m.full, req, &reply); err != nil {
			t.Fatalf("%s(%v): %v", m.name, req, err)
		}
		if c := reply.GetReturnCode(); c > 0 || c < pb.AntarisReturnCode_An_INVALID_SEQUENCE {
			t.Errorf("%s(%v) answered %d, not a return code of the contract", m.name, req, c)
		}
		if bugs := env.takeBugs(); len(bugs) > 0 {
			t.Fatalf("%s(%v):\n%s", m.name, req, strings.Join(bugs, "\n"))
		}
	})
}
