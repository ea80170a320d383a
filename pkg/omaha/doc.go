// Package omaha speaks Omaha protocol v3 the way Flatcar/CoreOS
// update_engine does (SPEC.md section 3): it builds requests byte for byte
// as FUE's omaha_request_action.cc emits them, parses responses with FUE's
// rules into a plain Plan, sends events, downloads payloads with HTTP Range
// resume and per-URL failover, and says which failures the check schedule
// backs off on (Backoff). The schedule itself is internal/engine's.
//
// Parties: the client (this package, driven by internal/engine) POSTs
// text/xml to SERVER (an Omaha server: Nebraska, go-omaha, or our dev
// server in pkg/omaha/server) and GETs payloads from the URLs the response
// names (codebase + package name), optionally with basic auth
// (DOWNLOAD_USER/DOWNLOAD_PASSWORD).
//
// Request shapes (app body variants, SPEC.md section 3):
//
//	update check: <ping active="1"> <updatecheck> <event 3/2 previousversion=X>
//	              (or <event 3/0 errorcode=44> when X == current version: rollback)
//	ping only:    <ping active="1">
//	event:        <event eventtype=T eventresult=R[ errorcode=E]>
//
// Errors are package sentinels (or *HTTPError); each documents the
// update_engine code of SPEC.md section 7 it maps to. This package never
// imports the engine; internal/engine maps the errors to codes.
package omaha
