package main

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	pb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const maxCredentialLength = 16 * 1024

type validator struct {
	pb.UnimplementedSessionValidatorServer

	signer     signer
	rdb        *redis.Client
	cookieName string
	keyPrefix  string
	userKey    string // "" when unset
	timeout    time.Duration
}

func (v *validator) answer(verdict pb.Verdict, reason pb.Reason) *pb.ValidateSessionResponse {
	return &pb.ValidateSessionResponse{Verdict: verdict, Reason: reason, CookieName: v.cookieName}
}

func (v *validator) ValidateSession(ctx context.Context, req *pb.ValidateSessionRequest) (*pb.ValidateSessionResponse, error) {
	var raw string
	switch c := req.GetCredential().(type) {
	case *pb.ValidateSessionRequest_CookieHeader:
		if len(c.CookieHeader) > maxCredentialLength {
			return v.answer(pb.Verdict_VERDICT_MALFORMED, pb.Reason_REASON_TOO_LARGE), nil
		}
		if len(c.CookieHeader) == 0 {
			return v.answer(pb.Verdict_VERDICT_MISSING, pb.Reason_REASON_NO_COOKIE), nil
		}
		value, ok := findCookie(latin1(c.CookieHeader), v.cookieName)
		if !ok {
			return v.answer(pb.Verdict_VERDICT_MISSING, pb.Reason_REASON_COOKIE_NOT_FOUND), nil
		}
		raw = value
	case *pb.ValidateSessionRequest_CookieHeaderText:
		if tooLong(c.CookieHeaderText) {
			return v.answer(pb.Verdict_VERDICT_MALFORMED, pb.Reason_REASON_TOO_LARGE), nil
		}
		if c.CookieHeaderText == "" {
			return v.answer(pb.Verdict_VERDICT_MISSING, pb.Reason_REASON_NO_COOKIE), nil
		}
		value, ok := findCookie(c.CookieHeaderText, v.cookieName)
		if !ok {
			return v.answer(pb.Verdict_VERDICT_MISSING, pb.Reason_REASON_COOKIE_NOT_FOUND), nil
		}
		raw = value
	case *pb.ValidateSessionRequest_SignedValue:
		if tooLong(c.SignedValue) {
			return v.answer(pb.Verdict_VERDICT_MALFORMED, pb.Reason_REASON_TOO_LARGE), nil
		}
		raw = cleanValue(c.SignedValue)
	default:
		return v.answer(pb.Verdict_VERDICT_MISSING, pb.Reason_REASON_NO_COOKIE), nil
	}

	if raw == "" {
		return v.answer(pb.Verdict_VERDICT_MISSING, pb.Reason_REASON_EMPTY_VALUE), nil
	}
	if !strings.HasPrefix(raw, "s:") {
		return v.answer(pb.Verdict_VERDICT_MALFORMED, pb.Reason_REASON_NOT_SIGNED), nil
	}
	sid, idx, ok := v.signer.unsign(raw[2:])
	if !ok {
		return v.answer(pb.Verdict_VERDICT_BAD_SIGNATURE, pb.Reason_REASON_SIGNATURE_MISMATCH), nil
	}
	resp := v.answer(pb.Verdict_VERDICT_VALID, pb.Reason_REASON_SESSION_ACTIVE)
	resp.SessionId = sid
	resp.SecretIndex = proto.Uint32(uint32(idx))
	if sid == "" {
		resp.Verdict, resp.Reason = pb.Verdict_VERDICT_MALFORMED, pb.Reason_REASON_EMPTY_SESSION_ID
		return resp, nil
	}

	// GET + PTTL in one round trip.
	key := v.keyPrefix + sid
	rctx, cancel := context.WithTimeout(ctx, v.timeout)
	pipe := v.rdb.Pipeline()
	getCmd := pipe.Get(rctx, key)
	pttlCmd := pipe.PTTL(rctx, key)
	_, _ = pipe.Exec(rctx)
	cancel()

	if err := pttlCmd.Err(); err != nil {
		return nil, storeError(ctx, err)
	}
	pttl := pttlCmd.Val() // -2: no key, -1: no TTL, else a duration
	data, err := getCmd.Result()
	switch {
	case err == nil:
	case errors.Is(err, redis.Nil):
		return v.notFound(resp), nil
	case strings.HasPrefix(err.Error(), "WRONGTYPE"):
		return v.corrupt(resp), nil
	default:
		return nil, storeError(ctx, err)
	}
	if data == "" || pttl == -2 {
		return v.notFound(resp), nil
	}

	var session any
	if json.Unmarshal([]byte(data), &session) != nil {
		return v.corrupt(resp), nil
	}
	if !jsTruthy(session) {
		return v.notFound(resp), nil
	}
	obj, isObj := session.(map[string]any)
	if !isObj {
		return v.corrupt(resp), nil
	}
	cookie, isObj := obj["cookie"].(map[string]any)
	if !isObj {
		return v.corrupt(resp), nil
	}
	now := time.Now()
	if pttl >= 0 {
		resp.ExpireTime = timestamppb.New(now.Add(pttl))
	} else if exp, ok := parseExpires(cookie["expires"]); ok {
		resp.ExpireTime = timestamppb.New(exp)
		if !exp.After(now) {
			resp.Verdict, resp.Reason = pb.Verdict_VERDICT_EXPIRED, pb.Reason_REASON_SESSION_EXPIRED
			return resp, nil
		}
	}

	passport, _ := obj["passport"].(map[string]any)
	user, present := passport["user"]
	if !present || !(jsTruthy(user) || user == float64(0)) {
		return resp, nil
	}
	resp.Authenticated = true
	if record, isObj := user.(map[string]any); isObj {
		id, ok := record["id"]
		if !ok {
			id = record["_id"]
		}
		idText := ""
		if id != nil {
			idText = jsString(id)
		}
		resp.User = profile(idText, record)
		return resp, nil
	}
	id := jsString(user)
	record, err := v.userRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	resp.User = profile(id, record)
	return resp, nil
}

func (v *validator) notFound(resp *pb.ValidateSessionResponse) *pb.ValidateSessionResponse {
	resp.Verdict, resp.Reason = pb.Verdict_VERDICT_MISSING, pb.Reason_REASON_SESSION_NOT_FOUND
	return resp
}

func (v *validator) corrupt(resp *pb.ValidateSessionResponse) *pb.ValidateSessionResponse {
	resp.Verdict, resp.Reason = pb.Verdict_VERDICT_MALFORMED, pb.Reason_REASON_CORRUPT_SESSION
	return resp
}

// userRecord reads REF_USER_KEY for a scalar Passport user: a JSON object in
// a string, or a hash. GET and HGETALL go in one round trip.
func (v *validator) userRecord(ctx context.Context, id string) (map[string]any, error) {
	if v.userKey == "" {
		return nil, nil
	}
	key := strings.ReplaceAll(v.userKey, "{id}", id)
	rctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	pipe := v.rdb.Pipeline()
	getCmd := pipe.Get(rctx, key)
	hashCmd := pipe.HGetAll(rctx, key)
	_, _ = pipe.Exec(rctx)

	if data, err := getCmd.Result(); err == nil {
		var record map[string]any
		if json.Unmarshal([]byte(data), &record) != nil {
			return nil, nil
		}
		return record, nil
	}
	if fields, err := hashCmd.Result(); err == nil && len(fields) > 0 {
		record := make(map[string]any, len(fields))
		for k, val := range fields {
			record[k] = val
		}
		return record, nil
	}
	for _, err := range []error{getCmd.Err(), hashCmd.Err()} {
		if err != nil && !errors.Is(err, redis.Nil) && !strings.HasPrefix(err.Error(), "WRONGTYPE") {
			return nil, storeError(ctx, err)
		}
	}
	return nil, nil
}

// storeError maps a Redis failure to UNAVAILABLE with an ErrorInfo, unless
// the caller's own deadline is what ran out.
func storeError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	reason, msg := "STORE_UNAVAILABLE", "session store unavailable"
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		reason, msg = "STORE_TIMEOUT", "session store timed out"
	}
	st, detailErr := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{
		Reason:   reason,
		Domain:   "sessionvalidator.v1",
		Metadata: map[string]string{"retryable": "true"},
	})
	if detailErr != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

func profile(id string, record map[string]any) *pb.UserProfile {
	p := &pb.UserProfile{Id: id}
	if record == nil {
		return p
	}
	if s, ok := record["username"].(string); ok {
		p.Username = s
	}
	for _, k := range []string{"displayName", "display_name", "name"} {
		if s, ok := record[k].(string); ok {
			p.DisplayName = s
			break
		}
	}
	if s, ok := record["email"].(string); ok {
		p.Email = s
	} else if emails, ok := record["emails"].([]any); ok && len(emails) > 0 {
		if first, ok := emails[0].(map[string]any); ok {
			if s, ok := first["value"].(string); ok {
				p.Email = s
			}
		}
	}
	if roles, ok := record["roles"]; ok && roles != nil {
		p.Roles = stringList(roles)
	} else {
		p.Roles = stringList(record["role"])
	}
	if attrs, err := structpb.NewStruct(record); err == nil {
		p.Attributes = attrs
	}
	return p
}

// stringList reads roles: a JSON list of strings, a JSON list in a hash
// field, a comma list ("a,b") or a single string.
func stringList(v any) []string {
	switch t := v.(type) {
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		if strings.HasPrefix(t, "[") {
			var list []any
			if json.Unmarshal([]byte(t), &list) == nil {
				return stringList(list)
			}
		}
		var out []string
		for _, part := range strings.Split(t, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		return out
	}
	return nil
}

func tooLong(s string) bool {
	return len(s) > maxCredentialLength && utf8.RuneCountInString(s) > maxCredentialLength
}

func jsTruthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case float64:
		return t != 0 && !math.IsNaN(t)
	}
	return true
}

// jsString renders a decoded JSON value as JavaScript's String() would.
func jsString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return "null"
	case float64:
		return jsNumber(t)
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			if e != nil {
				parts[i] = jsString(e)
			}
		}
		return strings.Join(parts, ",")
	}
	return "[object Object]"
}

func jsNumber(f float64) string {
	if f == 0 {
		return "0"
	}
	abs := math.Abs(f)
	if abs >= 1e-6 && abs < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // 1e+21, 1.5e-07
	mant, exp, _ := strings.Cut(s, "e")
	sign := exp[0]
	exp = strings.TrimLeft(exp[1:], "0")
	return mant + "e" + string(sign) + exp
}

func parseExpires(v any) (time.Time, bool) {
	s, ok := v.(string)
	if !ok || s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
