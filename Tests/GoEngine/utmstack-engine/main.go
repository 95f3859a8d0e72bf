// A UTMStack-like engine built on grpc-go, the implementation UTMStack's own engine uses: the independent peer the
// gateway's hand-framed HTTP/2 client is tested against. It serves plugins.Engine/Input and plugins.Engine/Notify on a
// Unix socket with grpc-go's defaults (4 MiB message limit, keepalive enforcement), acknowledges every log, and can
// be told to misbehave the ways a real engine does. Built by scripts/test.sh offline, in GOPATH mode, against
// Debian's golang-google-grpc-dev; no generated code: messages are read and written as raw protobuf.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// rawCodec passes protobuf bytes through; registered as "proto" it replaces the default codec.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// field returns string field `number` of a protobuf message ("" when absent).
func field(msg []byte, number int) string {
	i := 0
	varint := func() (uint64, bool) {
		var v uint64
		for shift := uint(0); i < len(msg) && shift < 64; shift += 7 {
			b := msg[i]
			i++
			v |= uint64(b&0x7f) << shift
			if b < 0x80 {
				return v, true
			}
		}
		return 0, false
	}
	for i < len(msg) {
		tag, ok := varint()
		if !ok {
			return ""
		}
		switch tag & 7 {
		case 0:
			varint()
		case 1:
			i += 8
		case 5:
			i += 4
		case 2:
			n, ok := varint()
			if !ok || i+int(n) > len(msg) {
				return ""
			}
			if int(tag>>3) == number {
				return string(msg[i : i+int(n)])
			}
			i += int(n)
		default:
			return ""
		}
	}
	return ""
}

func ack(id string) []byte {
	out := []byte{0x0a}
	n := len(id)
	for n >= 0x80 {
		out = append(out, byte(n)|0x80)
		n >>= 7
	}
	out = append(out, byte(n))
	return append(out, id...)
}

type engine struct {
	refuse   string
	ackDelay time.Duration
	// Until failUntil, every Input call ends at its first log with failStatus (a troubled engine, not a bad log).
	failUntil   time.Time
	failStatus  codes.Code
	failMessage string
	mu       sync.Mutex
	record   *os.File
}

// log records an acknowledged log (kind "log": its id, then the record Id inside raw), an acknowledged message
// ("message") or the start of an Input call ("call"), one tab-separated line each.
func (e *engine) log(kind, id, raw string) {
	recordID := ""
	var parsed map[string]interface{}
	if json.Unmarshal([]byte(raw), &parsed) == nil {
		if v, ok := parsed["Id"].(string); ok {
			recordID = v
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.record != nil {
		fmt.Fprintf(e.record, "%s\t%s\t%s\n", kind, id, recordID)
	}
}

func (e *engine) input(_ interface{}, stream grpc.ServerStream) error {
	e.log("call", "", "")
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		id, raw := field(msg, 1), field(msg, 6)
		if time.Now().Before(e.failUntil) {
			return status.Error(e.failStatus, e.failMessage)
		}
		if e.refuse != "" && strings.Contains(raw, e.refuse) {
			return status.Errorf(codes.InvalidArgument, "log %s refused: it contains %q", id, e.refuse)
		}
		if e.ackDelay > 0 {
			time.Sleep(e.ackDelay)
		}
		e.log("log", id, raw)
		if err := stream.SendMsg(ack(id)); err != nil {
			return err
		}
	}
}

func (e *engine) notify(_ interface{}, stream grpc.ServerStream) error {
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		id := field(msg, 1)
		e.log("message", id, field(msg, 4))
		if err := stream.SendMsg(ack(id)); err != nil {
			return err
		}
	}
}

func main() {
	socket := flag.String("socket", "", "Unix socket to serve plugins.Engine on (a stale file is removed)")
	record := flag.String("record", "", "file to append each acknowledged log to: kind, log id, record Id")
	refuse := flag.String("refuse", "", "end the call with INVALID_ARGUMENT on a log whose raw contains this text")
	ackDelay := flag.Duration("ack-delay", 0, "wait this long before acknowledging each log")
	failFor := flag.Duration("fail-for", 0, "for this long after starting, end every Input call at its first log with -fail-status")
	failStatus := flag.Int("fail-status", int(codes.Internal), "the gRPC status code -fail-for ends calls with")
	failMessage := flag.String("fail-message", "the engine is failing", "the status message -fail-for ends calls with")
	maxAge := flag.Duration("max-connection-age", 0, "send GOAWAY to connections older than this (grpc-go keepalive)")
	maxAgeGrace := flag.Duration("max-connection-age-grace", 30*time.Second, "close a connection this long after its GOAWAY")
	flag.Parse()
	encoding.RegisterCodec(rawCodec{})
	e := &engine{refuse: *refuse, ackDelay: *ackDelay, failUntil: time.Now().Add(*failFor),
		failStatus: codes.Code(*failStatus), failMessage: *failMessage}
	if *record != "" {
		f, err := os.OpenFile(*record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		e.record = f
	}
	os.Remove(*socket)
	listener, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var options []grpc.ServerOption
	if *maxAge > 0 {
		options = append(options, grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge: *maxAge, MaxConnectionAgeGrace: *maxAgeGrace}))
	}
	server := grpc.NewServer(options...)
	server.RegisterService(&grpc.ServiceDesc{
		ServiceName: "plugins.Engine",
		HandlerType: (*interface{})(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "Input", Handler: e.input, ServerStreams: true, ClientStreams: true},
			{StreamName: "Notify", Handler: e.notify, ServerStreams: true, ClientStreams: true},
		},
	}, struct{}{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		server.GracefulStop()
	}()
	fmt.Println("serving", *socket)
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
