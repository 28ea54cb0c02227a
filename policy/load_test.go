package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

// invalidConfigs maps each refused configuration in testdata to every error
// Load must report for it, in order, as FieldError.Error() formats them.
var invalidConfigs = []struct {
	desc string
	file string
	errs []string
}{
	{
		desc: "* with allow_credentials",
		file: "invalid-star-with-credentials.yaml",
		errs: []string{
			"testdata/invalid-star-with-credentials.yaml:3:23: policies[0].allowed_origins[0]: allowed_origins \"*\" cannot be used with allow_credentials: browsers refuse \"Access-Control-Allow-Origin: *\" on credentialed requests, and allowing every origin with cookies would expose your users; list the origins exactly",
		},
	},
	{
		desc: "a list written as a string: the suggestion is a list of the comma-separated items",
		file: "invalid-list-written-as-string.yaml",
		errs: []string{
			`testdata/invalid-list-written-as-string.yaml:4:14: policies[0].match.hosts: must be a list: write [https://api.example.com, "*.api.example.com"]`,
			`testdata/invalid-list-written-as-string.yaml:5:22: policies[0].allowed_origins: must be a list: write [https://app.example.com, "https://*.example.net"]`,
			`testdata/invalid-list-written-as-string.yaml:6:22: policies[0].allowed_methods: must be a list: write [GET, POST]`,
			`testdata/invalid-list-written-as-string.yaml:7:22: policies[0].allowed_headers: must be a list: write [Content-Type, X-Request-Id]`,
			`testdata/invalid-list-written-as-string.yaml:8:22: policies[0].exposed_headers: must be a list: write [X-Request-Id]`,
		},
	},
	{
		desc: "a boolean or a number in quotes is a string: write it without them",
		file: "invalid-quoted-scalars.yaml",
		errs: []string{
			`testdata/invalid-quoted-scalars.yaml:4:24: policies[0].allow_credentials: must be true or false, not the quoted string "true": write true without quotes`,
			`testdata/invalid-quoted-scalars.yaml:5:32: policies[0].reject_disallowed_origins: must be true or false, not the quoted string "False": write false without quotes`,
			`testdata/invalid-quoted-scalars.yaml:6:22: policies[0].max_age_seconds: must be a whole number, not the quoted string "600": write 600 without quotes`,
			`testdata/invalid-quoted-scalars.yaml:7:18: policies[0].report_only: must be true or false, not "yes"`,
		},
	},
	{
		desc: `allowed_origins: "*" suggests only what is then accepted`,
		file: "invalid-star-string-with-credentials.yaml",
		errs: []string{
			`testdata/invalid-star-string-with-credentials.yaml:3:22: policies[0].allowed_origins: must be a list, and "*" (any origin) cannot be used with allow_credentials: true, since browsers refuse "Access-Control-Allow-Origin: *" on credentialed requests: list the origins that may send credentials, such as [https://app.example.com], or remove allow_credentials and write ["*"]`,
			`testdata/invalid-star-string-with-credentials.yaml:6:24: policies[1].allow_credentials: must be true or false, not the quoted string "true": write true without quotes`,
			`testdata/invalid-star-string-with-credentials.yaml:7:22: policies[1].allowed_origins: must be a list, and "*" (any origin) cannot be used with allow_credentials: true, since browsers refuse "Access-Control-Allow-Origin: *" on credentialed requests: list the origins that may send credentials, such as [https://app.example.com], or remove allow_credentials and write ["*"]`,
			`testdata/invalid-star-string-with-credentials.yaml:9:22: policies[2].allowed_origins: must be a list: write ["*"]`,
			`testdata/invalid-star-string-with-credentials.yaml:11:22: policies[3].allowed_origins: must be a list, and "*" (any origin) must be its only entry: write ["*"], or list the origins without it`,
		},
	},
	{
		desc: "* among other origins",
		file: "invalid-star-with-other-origins.yaml",
		errs: []string{
			"testdata/invalid-star-with-other-origins.yaml:5:9: policies[0].allowed_origins[1]: \"*\" allows every origin, so it must be the only entry: remove the other origins or the \"*\"",
		},
	},
	{
		desc: "* in exposed_headers with allow_credentials",
		file: "invalid-exposed-star-with-credentials.yaml",
		errs: []string{
			"testdata/invalid-exposed-star-with-credentials.yaml:4:37: policies[0].exposed_headers[1]: exposed_headers \"*\" with allow_credentials is taken literally by browsers (a header named \"*\"), so it exposes nothing: list the headers by name",
		},
	},
	{
		desc: "wildcard on a public suffix with allow_credentials",
		file: "invalid-public-suffix-wildcard.yaml",
		errs: []string{
			"testdata/invalid-public-suffix-wildcard.yaml:4:9: policies[0].allowed_origins[0]: \"https://*.com\" puts a wildcard directly on the public suffix \"com\", so anyone who registers a domain there would get credentialed access: write the origins of your own domain, such as \"https://*.example.com\"",
			"testdata/invalid-public-suffix-wildcard.yaml:5:9: policies[0].allowed_origins[1]: \"https://*.co.uk\" puts a wildcard directly on the public suffix \"co.uk\", so anyone who registers a domain there would get credentialed access: write the origins of your own domain, such as \"https://*.example.co.uk\"",
			"testdata/invalid-public-suffix-wildcard.yaml:6:9: policies[0].allowed_origins[2]: \"https://*.github.io\" puts a wildcard directly on the public suffix \"github.io\", so anyone who registers a domain there would get credentialed access: write the origins of your own domain, such as \"https://*.example.github.io\"",
		},
	},
	{
		desc: "plain http with allow_credentials; localhost and loopback accepted",
		file: "invalid-http-with-credentials.yaml",
		errs: []string{
			"testdata/invalid-http-with-credentials.yaml:4:9: policies[0].allowed_origins[0]: \"http://app.example.com\" is plain http with allow_credentials: anyone on the network can impersonate it; write \"https://app.example.com\" (http is accepted only for localhost and loopback addresses)",
			"testdata/invalid-http-with-credentials.yaml:5:9: policies[0].allowed_origins[1]: \"http://*.example.com\" is plain http with allow_credentials: anyone on the network can impersonate it; write \"https://*.example.com\" (http is accepted only for localhost and loopback addresses)",
		},
	},
	{
		desc: "null with allow_credentials",
		file: "invalid-null-with-credentials.yaml",
		errs: []string{
			"testdata/invalid-null-with-credentials.yaml:3:48: policies[0].allowed_origins[1]: \"null\" with allow_credentials lets any sandboxed iframe or file page read credentialed responses: remove \"null\" or allow_credentials",
		},
	},
	{
		desc: "origin with a path",
		file: "invalid-origin-path.yaml",
		errs: []string{
			"testdata/invalid-origin-path.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://app.example.com/app\" has a path; an origin is only scheme, host and port: did you mean \"https://app.example.com\"?",
		},
	},
	{
		desc: "origin with a trailing slash",
		file: "invalid-origin-trailing-slash.yaml",
		errs: []string{
			"testdata/invalid-origin-trailing-slash.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://app.example.com/\" has a trailing slash, which browsers never send: did you mean \"https://app.example.com\"?",
		},
	},
	{
		desc: "origin with userinfo",
		file: "invalid-origin-userinfo.yaml",
		errs: []string{
			"testdata/invalid-origin-userinfo.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://user:secret@app.example.com\" has user information, which browsers never send in Origin: did you mean \"https://app.example.com\"?",
		},
	},
	{
		desc: "origin with a query",
		file: "invalid-origin-query.yaml",
		errs: []string{
			"testdata/invalid-origin-query.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://app.example.com?x=1\" has a query; an origin is only scheme, host and port: did you mean \"https://app.example.com\"?",
		},
	},
	{
		desc: "origin without a scheme",
		file: "invalid-origin-no-scheme.yaml",
		errs: []string{
			"testdata/invalid-origin-no-scheme.yaml:4:9: policies[0].allowed_origins[0]: origin \"app.example.com\" has no scheme: did you mean \"https://app.example.com\"?",
		},
	},
	{
		desc: "origin with a port outside 1-65535",
		file: "invalid-origin-port.yaml",
		errs: []string{
			"testdata/invalid-origin-port.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://app.example.com:0\" has port 0, outside 1-65535",
			"testdata/invalid-origin-port.yaml:5:9: policies[0].allowed_origins[1]: origin \"https://app.example.com:65536\" has port 65536, outside 1-65535",
			"testdata/invalid-origin-port.yaml:6:9: policies[0].allowed_origins[2]: origin \"https://app.example.com:https\" has an invalid port \"https\": write a number from 1 to 65535",
		},
	},
	{
		desc: "wildcard that is not the whole first label",
		file: "invalid-origin-wildcard-position.yaml",
		errs: []string{
			"testdata/invalid-origin-wildcard-position.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://a.*.example.com\" has a wildcard that is not the whole first label: write \"scheme://*.example.com\" for any subdomain of example.com, or list each origin",
			"testdata/invalid-origin-wildcard-position.yaml:5:9: policies[0].allowed_origins[1]: origin \"https://*example.com\" has a wildcard that is not the whole first label: write \"scheme://*.example.com\" for any subdomain of example.com, or list each origin",
			"testdata/invalid-origin-wildcard-position.yaml:6:9: policies[0].allowed_origins[2]: origin \"https://*\" has a wildcard that is not the whole first label: write \"scheme://*.example.com\" for any subdomain of example.com, or list each origin",
			"testdata/invalid-origin-wildcard-position.yaml:7:9: policies[0].allowed_origins[3]: origin \"https://*.*.example.com\" has a wildcard that is not the whole first label: write \"scheme://*.example.com\" for any subdomain of example.com, or list each origin",
		},
	},
	{
		desc: "origin whose host ends with a dot",
		file: "invalid-origin-trailing-dot.yaml",
		errs: []string{
			"testdata/invalid-origin-trailing-dot.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://app.example.com.\" ends its host with a dot, which never matches a browser's usual Origin: did you mean \"https://app.example.com\"?",
		},
	},
	{
		desc: "file:// origins",
		file: "invalid-origin-file.yaml",
		errs: []string{
			"testdata/invalid-origin-file.yaml:4:9: policies[0].allowed_origins[0]: file:// origins cannot be allowed: browsers send \"Origin: null\" for file pages; list \"null\" if you really mean it (never with credentials)",
			"testdata/invalid-origin-file.yaml:5:9: policies[0].allowed_origins[1]: file:// origins cannot be allowed: browsers send \"Origin: null\" for file pages; list \"null\" if you really mean it (never with credentials)",
		},
	},
	{
		desc: "host ending in a number that is not dotted-decimal IPv4",
		file: "invalid-origin-numeric-host.yaml",
		errs: []string{
			"testdata/invalid-origin-numeric-host.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://127.000.000.001\" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as \"https://192.0.2.1\"",
			"testdata/invalid-origin-numeric-host.yaml:5:9: policies[0].allowed_origins[1]: origin \"https://2130706433\" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as \"https://192.0.2.1\"",
			"testdata/invalid-origin-numeric-host.yaml:6:9: policies[0].allowed_origins[2]: origin \"https://0x7f.0.0.1\" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as \"https://192.0.2.1\"",
			"testdata/invalid-origin-numeric-host.yaml:7:9: policies[0].allowed_origins[3]: origin \"https://app.example.123\" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as \"https://192.0.2.1\"",
		},
	},
	{
		desc: "other malformed origins",
		file: "invalid-origin-other.yaml",
		errs: []string{
			"testdata/invalid-origin-other.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://\" has no host",
			"testdata/invalid-origin-other.yaml:5:9: policies[0].allowed_origins[1]: origin \" https://app.example.com\" has surrounding spaces: did you mean \"https://app.example.com\"?",
			"testdata/invalid-origin-other.yaml:6:9: policies[0].allowed_origins[2]: origin \"https://app example.com\": host \"app example.com\" has characters a host name cannot hold",
			"testdata/invalid-origin-other.yaml:7:9: policies[0].allowed_origins[3]: origin \"https://[::1\": unterminated IPv6 address",
			"testdata/invalid-origin-other.yaml:8:9: policies[0].allowed_origins[4]: origin \"https://[fe80::1%eth0]\" has an invalid IPv6 address [fe80::1%eth0]",
			"testdata/invalid-origin-other.yaml:9:9: policies[0].allowed_origins[5]: origin \"https://*.192.0.2.1\" puts a wildcard on an IP address, which has no subdomains",
			"testdata/invalid-origin-other.yaml:10:9: policies[0].allowed_origins[6]: must be a string, not empty",
		},
	},
	{
		desc: "forbidden methods",
		file: "invalid-method-forbidden.yaml",
		errs: []string{
			"testdata/invalid-method-forbidden.yaml:4:28: policies[0].allowed_methods[1]: CONNECT is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it",
			"testdata/invalid-method-forbidden.yaml:4:37: policies[0].allowed_methods[2]: TRACE is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it",
			"testdata/invalid-method-forbidden.yaml:4:44: policies[0].allowed_methods[3]: TRACK is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it",
			"testdata/invalid-method-forbidden.yaml:4:51: policies[0].allowed_methods[4]: \"*\" is not accepted in allowed_methods: list the methods by name, such as [PUT, PATCH, DELETE]",
		},
	},
	{
		desc: "method names that are not tokens",
		file: "invalid-method-name.yaml",
		errs: []string{
			"testdata/invalid-method-name.yaml:4:23: policies[0].allowed_methods[0]: \"GE T\" is not a valid method name (letters, digits and !#$%&'*+-.^_`|~ only)",
			"testdata/invalid-method-name.yaml:4:31: policies[0].allowed_methods[1]: \"PUT,PATCH\" is not a valid method name (letters, digits and !#$%&'*+-.^_`|~ only)",
			"testdata/invalid-method-name.yaml:4:44: policies[0].allowed_methods[2]: \"\" is not a valid method name (letters, digits and !#$%&'*+-.^_`|~ only)",
		},
	},
	{
		desc: "forbidden request headers",
		file: "invalid-header-forbidden.yaml",
		errs: []string{
			"testdata/invalid-header-forbidden.yaml:4:37: policies[0].allowed_headers[1]: Cookie is a forbidden request header: browsers set it themselves and never ask to send it; remove it (cookies need allow_credentials instead)",
			"testdata/invalid-header-forbidden.yaml:4:45: policies[0].allowed_headers[2]: Sec-Fetch-Mode is a forbidden request header: browsers set it themselves and never ask to send it; remove it (cookies need allow_credentials instead)",
			"testdata/invalid-header-forbidden.yaml:4:61: policies[0].allowed_headers[3]: Proxy-Authorization is a forbidden request header: browsers set it themselves and never ask to send it; remove it (cookies need allow_credentials instead)",
			"testdata/invalid-header-forbidden.yaml:4:82: policies[0].allowed_headers[4]: Host is a forbidden request header: browsers set it themselves and never ask to send it; remove it (cookies need allow_credentials instead)",
		},
	},
	{
		desc: "header names that are not tokens",
		file: "invalid-header-name.yaml",
		errs: []string{
			"testdata/invalid-header-name.yaml:4:23: policies[0].allowed_headers[0]: \"X Y\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)",
			"testdata/invalid-header-name.yaml:4:30: policies[0].allowed_headers[1]: \"X-Foo:\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)",
			"testdata/invalid-header-name.yaml:4:40: policies[0].allowed_headers[2]: \"\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)",
			"testdata/invalid-header-name.yaml:5:23: policies[0].exposed_headers[0]: \"X Y\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)",
		},
	},
	{
		desc: "response-only headers in allowed_headers",
		file: "invalid-header-response-only.yaml",
		errs: []string{
			"testdata/invalid-header-response-only.yaml:4:23: policies[0].allowed_headers[0]: Access-Control-Allow-Origin is a response header; allowed_headers lists request headers a page may send (use exposed_headers for headers it may read)",
			"testdata/invalid-header-response-only.yaml:4:52: policies[0].allowed_headers[1]: access-control-max-age is a response header; allowed_headers lists request headers a page may send (use exposed_headers for headers it may read)",
		},
	},
	{
		desc: "Set-Cookie in exposed_headers",
		file: "invalid-exposed-set-cookie.yaml",
		errs: []string{
			"testdata/invalid-exposed-set-cookie.yaml:4:37: policies[0].exposed_headers[1]: Set-Cookie can never be exposed: browsers hide it from scripts whatever the server says; remove it",
		},
	},
	{
		desc: "negative max_age_seconds",
		file: "invalid-max-age-negative.yaml",
		errs: []string{
			"testdata/invalid-max-age-negative.yaml:4:22: policies[0].max_age_seconds: max_age_seconds is -1: write 0 to send no Access-Control-Max-Age, or a number of seconds up to 86400",
		},
	},
	{
		desc: "max_age_seconds above 86400",
		file: "invalid-max-age-too-large.yaml",
		errs: []string{
			"testdata/invalid-max-age-too-large.yaml:4:22: policies[0].max_age_seconds: max_age_seconds 86401 is more than a day (86400): browsers cap it lower (Chromium at 7200); write 7200 or less",
		},
	},
	{
		desc: "allow_private_network with *",
		file: "invalid-private-network-any-origin.yaml",
		errs: []string{
			"testdata/invalid-private-network-any-origin.yaml:4:28: policies[0].allow_private_network: allow_private_network with allowed_origins \"*\" would open the private network to every web site: list the origins exactly",
		},
	},
	{
		desc: "empty and missing allowed_origins",
		file: "invalid-empty-origins.yaml",
		errs: []string{
			"testdata/invalid-empty-origins.yaml:3:22: policies[0].allowed_origins: allowed_origins is empty: list the origins allowed to read responses, such as \"https://app.example.com\"",
			"testdata/invalid-empty-origins.yaml:4:5: policies[1].allowed_origins: allowed_origins is empty: list the origins allowed to read responses, such as \"https://app.example.com\"",
		},
	},
	{
		desc: "duplicate policy names",
		file: "invalid-duplicate-policy-name.yaml",
		errs: []string{
			"testdata/invalid-duplicate-policy-name.yaml:6:11: policies[2].name: duplicate policy name \"api\" (policies[0] has it already): names must be unique",
		},
	},
	{
		desc: "default_policy naming no policy",
		file: "invalid-default-policy-unknown.yaml",
		errs: []string{
			"testdata/invalid-default-policy-unknown.yaml:6:17: default_policy: default_policy \"orders\" names no policy: write one of \"api\", \"files\", or leave it out",
		},
	},
	{
		desc: "missing and invalid policy names",
		file: "invalid-policy-name.yaml",
		errs: []string{
			"testdata/invalid-policy-name.yaml:2:5: policies[0].name: name is required: write a short name such as \"orders\" ([a-z0-9][a-z0-9_-]{0,63})",
			"testdata/invalid-policy-name.yaml:3:11: policies[1].name: invalid name \"Orders\": use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
			"testdata/invalid-policy-name.yaml:5:11: policies[2].name: invalid name \"-orders\": use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
		},
	},
	{
		desc: "invalid match hosts and path prefixes",
		file: "invalid-match.yaml",
		errs: []string{
			"testdata/invalid-match.yaml:4:32: policies[0].match.hosts[1]: host \"a.*.example.com\" has a wildcard that is not the whole first label: write \"*.example.com\"",
			"testdata/invalid-match.yaml:4:51: policies[0].match.hosts[2]: host \"https://api.example.com\" must be a host name (and optional port), not a URL: did you mean \"api.example.com\"?",
			"testdata/invalid-match.yaml:4:78: policies[0].match.hosts[3]: host \"api.example.com:0\" has an invalid port: write a number from 1 to 65535",
			"testdata/invalid-match.yaml:4:99: policies[0].match.hosts[4]: host \"*.example.com:443\": a wildcard host matches any port; leave the port out",
			"testdata/invalid-match.yaml:4:120: policies[0].match.hosts[5]: empty host: write a host name such as \"api.example.com\"",
			"testdata/invalid-match.yaml:5:29: policies[0].match.path_prefixes[1]: path prefix \"v2/\" must start with '/': did you mean \"/v2/\"?",
			"testdata/invalid-match.yaml:5:34: policies[0].match.path_prefixes[2]: path prefix \"/v3?x=1\" holds a query or fragment; prefixes match the path only",
		},
	},
	{
		desc: "unknown top-level fields",
		file: "invalid-unknown-field-top.yaml",
		errs: []string{
			"testdata/invalid-unknown-field-top.yaml:4:1: default_polciy: unknown field \"default_polciy\": did you mean \"default_policy\"?",
			"testdata/invalid-unknown-field-top.yaml:5:1: listen: unknown field \"listen\": valid fields are policies, default_policy, authorizers",
		},
	},
	{
		desc: "unknown nested fields",
		file: "invalid-unknown-field-nested.yaml",
		errs: []string{
			"testdata/invalid-unknown-field-nested.yaml:4:7: policies[0].match.host: unknown field \"host\": did you mean \"hosts\"?",
			"testdata/invalid-unknown-field-nested.yaml:5:5: policies[0].allowed_origin: unknown field \"allowed_origin\": did you mean \"allowed_origins\"?",
			"testdata/invalid-unknown-field-nested.yaml:7:5: policies[0].allow_credential: unknown field \"allow_credential\": did you mean \"allow_credentials\"?",
		},
	},
	{
		desc: "field set twice",
		file: "invalid-field-set-twice.yaml",
		errs: []string{
			"testdata/invalid-field-set-twice.yaml:4:5: policies[0].allowed_origins: field \"allowed_origins\" is set twice: keep one",
		},
	},
	{
		desc: "wrong types",
		file: "invalid-wrong-types.yaml",
		errs: []string{
			"testdata/invalid-wrong-types.yaml:2:11: policies[0].name: must be a string, not 42",
			"testdata/invalid-wrong-types.yaml:3:22: policies[0].allowed_origins: must be a list: write [https://app.example.com]",
			"testdata/invalid-wrong-types.yaml:4:22: policies[0].allowed_methods: must be a list of strings, not a mapping",
			"testdata/invalid-wrong-types.yaml:5:37: policies[0].allowed_headers[1]: must be a string, not a list",
			"testdata/invalid-wrong-types.yaml:6:24: policies[0].allow_credentials: must be true or false, not \"yes\"",
			"testdata/invalid-wrong-types.yaml:7:22: policies[0].max_age_seconds: must be a whole number, not \"ten\"",
			"testdata/invalid-wrong-types.yaml:8:18: policies[0].report_only: must be true or false, not 1",
			"testdata/invalid-wrong-types.yaml:9:17: default_policy: must be a string, not a list",
		},
	},
	{
		desc: "document that is not a mapping",
		file: "invalid-not-a-mapping.yaml",
		errs: []string{
			"testdata/invalid-not-a-mapping.yaml:1:1: must be a mapping with a \"policies\" list, not a list",
		},
	},
	{
		desc: "invalid YAML syntax",
		file: "invalid-yaml-syntax.yaml",
		errs: []string{
			"testdata/invalid-yaml-syntax.yaml:3:22: invalid YAML: '[' is never closed (did not find expected ',' or ']')",
		},
	},
	{
		desc: "control character",
		file: "invalid-control-character.yaml",
		errs: []string{
			"testdata/invalid-control-character.yaml:2:15: invalid YAML: control character U+0001: control characters are not allowed; remove it",
		},
	},
	{
		desc: "a misspelled key: what it holds is checked as the suggested field",
		file: "invalid-misspelled-key-children.yaml",
		errs: []string{
			`testdata/invalid-misspelled-key-children.yaml:1:1: policy: unknown field "policy": did you mean "policies"?`,
			`testdata/invalid-misspelled-key-children.yaml:3:23: policies[0].allowed_origins[0]: origin "https://app.example.com/" has a trailing slash, which browsers never send: did you mean "https://app.example.com"?`,
			`testdata/invalid-misspelled-key-children.yaml:4:23: policies[0].allowed_methods[0]: CONNECT is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it`,
			`testdata/invalid-misspelled-key-children.yaml:5:5: policies[0].alowed_headers: unknown field "alowed_headers": did you mean "allowed_headers"?`,
			`testdata/invalid-misspelled-key-children.yaml:5:22: policies[0].allowed_headers[0]: Cookie is a forbidden request header: browsers set it themselves and never ask to send it; remove it (cookies need allow_credentials instead)`,
		},
	},
	{
		desc: "a match host written as a URL: did you mean its host",
		file: "invalid-match-host-url.yaml",
		errs: []string{
			`testdata/invalid-match-host-url.yaml:4:15: policies[0].match.hosts[0]: host "https://api.example.com" must be a host name (and optional port), not a URL: did you mean "api.example.com"?`,
			`testdata/invalid-match-host-url.yaml:4:42: policies[0].match.hosts[1]: host "http://api.example.com:8443/" must be a host name (and optional port), not a URL: did you mean "api.example.com:8443"?`,
			`testdata/invalid-match-host-url.yaml:4:74: policies[0].match.hosts[2]: host "api.example.com/v1" must be a host name (and optional port), not a URL: did you mean "api.example.com"? (and path_prefixes: ["/v1"] for the path)`,
		},
	},
	{
		desc: "a tab in the indentation: its line and column, and the word tab",
		file: "invalid-yaml-tab.yaml",
		errs: []string{
			"testdata/invalid-yaml-tab.yaml:4:1: invalid YAML: a tab character in the indentation: YAML indents with spaces only; replace the tab with spaces",
		},
	},
	{
		desc: "a tab before a list item",
		file: "invalid-yaml-tab-list.yaml",
		errs: []string{
			"testdata/invalid-yaml-tab-list.yaml:2:1: invalid YAML: a tab character in the indentation: YAML indents with spaces only; replace the tab with spaces",
		},
	},
	{
		desc: "a character that cannot start a value",
		file: "invalid-yaml-at-sign.yaml",
		errs: []string{
			"testdata/invalid-yaml-at-sign.yaml:3:22: invalid YAML: '@' cannot start a value: quote the value",
		},
	},
	{
		desc: "empty file",
		file: "invalid-empty.yaml",
		errs: []string{
			"testdata/invalid-empty.yaml:1:1: policies: no policies: write at least one policy with a name and allowed_origins",
		},
	},
	{
		desc: "empty policy list",
		file: "invalid-no-policies.yaml",
		errs: []string{
			"testdata/invalid-no-policies.yaml:1:11: policies: no policies: write at least one policy with a name and allowed_origins",
		},
	},
	{
		desc: "many errors, all reported in line order",
		file: "invalid-many-errors.yaml",
		errs: []string{
			"testdata/invalid-many-errors.yaml:2:11: policies[0].name: invalid name \"Api\": use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit",
			"testdata/invalid-many-errors.yaml:4:9: policies[0].allowed_origins[0]: origin \"https://app.example.com/\" has a trailing slash, which browsers never send: did you mean \"https://app.example.com\"?",
			"testdata/invalid-many-errors.yaml:5:9: policies[0].allowed_origins[1]: \"*\" allows every origin, so it must be the only entry: remove the other origins or the \"*\"",
			"testdata/invalid-many-errors.yaml:6:28: policies[0].allowed_methods[1]: TRACE is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it",
			"testdata/invalid-many-errors.yaml:7:23: policies[0].allowed_headers[0]: Cookie is a forbidden request header: browsers set it themselves and never ask to send it; remove it (cookies need allow_credentials instead)",
			"testdata/invalid-many-errors.yaml:8:23: policies[0].exposed_headers[0]: Set-Cookie can never be exposed: browsers hide it from scripts whatever the server says; remove it",
			"testdata/invalid-many-errors.yaml:9:22: policies[0].max_age_seconds: max_age_seconds 100000 is more than a day (86400): browsers cap it lower (Chromium at 7200); write 7200 or less",
			"testdata/invalid-many-errors.yaml:11:5: policies[0].colour: unknown field \"colour\": valid fields are name, match, allowed_origins, allowed_methods, allowed_headers, exposed_headers, allow_credentials, max_age_seconds, allow_private_network, reject_disallowed_origins, report_only, authorizer",
			"testdata/invalid-many-errors.yaml:13:22: policies[1].allowed_origins: allowed_origins is empty: list the origins allowed to read responses, such as \"https://app.example.com\"",
			"testdata/invalid-many-errors.yaml:14:11: policies[2].name: duplicate policy name \"files\" (policies[1] has it already): names must be unique",
			"testdata/invalid-many-errors.yaml:15:23: policies[2].allowed_origins[0]: \"http://files.example.com\" is plain http with allow_credentials: anyone on the network can impersonate it; write \"https://files.example.com\" (http is accepted only for localhost and loopback addresses)",
			"testdata/invalid-many-errors.yaml:17:17: default_policy: default_policy \"nope\" names no policy: write one of \"Api\", \"files\", or leave it out",
		},
	},
}

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range invalidConfigs {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			e, _, err := policy.LoadFile(filepath.Join("testdata", tc.file))
			if e != nil {
				t.Errorf("LoadFile returned an engine for an invalid configuration")
			}
			if err == nil {
				t.Fatalf("LoadFile: no error, want %d", len(tc.errs))
			}
			var got []string
			for _, fe := range policy.FieldErrors(err) {
				got = append(got, fe.Error())
				if fe.File == "" || fe.Line == 0 || fe.Column == 0 {
					t.Errorf("error %q has no position", fe.Error())
				}
			}
			if !slices.Equal(got, tc.errs) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.errs, "\n     "))
			}
			// The joined error says the same, one problem a line.
			if joined := strings.Join(tc.errs, "\n"); err.Error() != joined {
				t.Errorf("err.Error() = %q, want %q", err.Error(), joined)
			}
		})
	}
}

// TestInvalidFilesAreAllTested keeps the table and testdata in step.
func TestInvalidFilesAreAllTested(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/invalid-*")
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range invalidConfigs {
		tested[tc.file] = true
	}
	for _, f := range files {
		if !tested[filepath.Base(f)] {
			t.Errorf("%s is not in invalidConfigs", f)
		}
	}
}

func TestLoadValidWithWarnings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		desc     string
		file     string
		warnings []string
		// origins must be allowed (an actual request from each gets
		// Access-Control-Allow-Origin) by policy
		policy  string
		origins []string
	}{
		{
			desc: "origins normalised to what browsers send",
			file: "valid-normalised-origins.yaml",
			warnings: []string{
				"testdata/valid-normalised-origins.yaml:4:9: policies[0].allowed_origins[0]: host \"APP.Example.com\" normalised to \"app.example.com\": browsers send host names in lower case; write \"https://app.example.com\"",
				"testdata/valid-normalised-origins.yaml:5:9: policies[0].allowed_origins[1]: scheme \"HTTPS\" normalised to \"https\", as browsers send it; write \"https://admin.example.com\"",
				"testdata/valid-normalised-origins.yaml:6:9: policies[0].allowed_origins[2]: default port 443 removed: browsers leave it out of Origin; write \"https://app.example.com\"",
				"testdata/valid-normalised-origins.yaml:6:9: policies[0].allowed_origins[2]: origin \"https://app.example.com\" is listed twice",
				"testdata/valid-normalised-origins.yaml:7:9: policies[0].allowed_origins[3]: default port 80 removed: browsers leave it out of Origin; write \"http://localhost\"",
				"testdata/valid-normalised-origins.yaml:8:9: policies[0].allowed_origins[4]: IPv6 address [0:0:0:0:0:0:0:1] normalised to [::1], as browsers send it; write \"https://[::1]:8443\"",
				"testdata/valid-normalised-origins.yaml:9:9: policies[0].allowed_origins[5]: IPv6 address [2001:DB8::1] normalised to [2001:db8::1], as browsers send it; write \"https://[2001:db8::1]\"",
				"testdata/valid-normalised-origins.yaml:10:9: policies[0].allowed_origins[6]: host \"bücher.example\" normalised to its Punycode form \"xn--bcher-kva.example\", as browsers send it; write \"https://xn--bcher-kva.example\"",
				"testdata/valid-normalised-origins.yaml:11:9: policies[0].allowed_origins[7]: host \"Preview.example.com\" normalised to \"preview.example.com\": browsers send host names in lower case; write \"https://*.preview.example.com\"",
				"testdata/valid-normalised-origins.yaml:12:9: policies[0].allowed_origins[8]: port \"08443\" normalised to 8443, as browsers send it; write \"https://app.example.com:8443\"",
				"testdata/valid-normalised-origins.yaml:13:9: policies[0].allowed_origins[9]: IPv6 address [::FFFF:192.0.2.1] normalised to [::ffff:c000:201], as browsers send it; write \"https://[::ffff:c000:201]\"",
			},
			policy: "api",
			// Each as a browser serializes it (new URL(o).origin).
			origins: []string{
				"https://app.example.com",
				"https://admin.example.com",
				"http://localhost",
				"https://[::1]:8443",
				"https://[2001:db8::1]",
				"https://xn--bcher-kva.example",
				"https://pr-1.preview.example.com",
				"https://app.example.com:8443",
				"https://[::ffff:c000:201]",
			},
		},
		{
			desc: "max_age_seconds above Chromium's cap",
			file: "valid-max-age-warning.yaml",
			warnings: []string{
				"testdata/valid-max-age-warning.yaml:7:22: policies[1].max_age_seconds: max_age_seconds 7201 is more than Chromium's cap of 7200: Chromium-based browsers will cache preflights for 7200 seconds only",
				"testdata/valid-max-age-warning.yaml:10:22: policies[2].max_age_seconds: max_age_seconds 86400 is more than Chromium's cap of 7200: Chromium-based browsers will cache preflights for 7200 seconds only",
			},
		},
		{
			desc: "a policy after a * policy with the same match never decides",
			file: "valid-group-shadowed.yaml",
			warnings: []string{
				`testdata/valid-group-shadowed.yaml:8:7: policies[1].match: policy "app" shares its match with "public", written before it, whose allowed_origins "*" admit every origin: "app" never decides; put it first, or give it another match`,
			},
			policy:  "public",
			origins: []string{"https://app.example.com"},
		},
		{
			desc:    "http origins with credentials on localhost and loopback addresses",
			file:    "valid-loopback-credentials.yaml",
			policy:  "dev",
			origins: []string{"http://localhost:3000", "http://dev.localhost:3000", "http://127.0.0.1:8080", "http://[::1]:8080"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			e, warnings, err := policy.LoadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			var got []string
			for _, w := range warnings {
				got = append(got, w.Error())
			}
			if !slices.Equal(got, tc.warnings) {
				t.Errorf("warnings:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.warnings, "\n     "))
			}
			if !slices.Equal(e.Warnings(), warnings) {
				t.Errorf("Engine.Warnings() = %v, want %v", e.Warnings(), warnings)
			}
			for _, o := range tc.origins {
				req := policy.Request{Method: "GET", Policy: tc.policy, Origin: o}
				d, err := e.Decide(&req)
				if err != nil {
					t.Fatal(err)
				}
				if d.Kind != policy.KindActualAllowed {
					t.Errorf("Origin %q: %v (%v), want %v", o, d.Kind, d.Reason, policy.KindActualAllowed)
				}
			}
		})
	}
}

func TestLoadNormalisedConfig(t *testing.T) {
	t.Parallel()
	e, _, err := policy.LoadFile("testdata/valid-normalised-origins.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"https://app.example.com",
		"https://admin.example.com",
		"http://localhost",
		"https://[::1]:8443",
		"https://[2001:db8::1]",
		"https://xn--bcher-kva.example",
		"https://*.preview.example.com",
		"https://app.example.com:8443",
		"https://[::ffff:c000:201]",
	}
	if got := e.Config().Policies[0].AllowedOrigins; !slices.Equal(got, want) {
		t.Errorf("normalised allowed_origins:\n got %q\nwant %q", got, want)
	}
}

func TestMaxAgeAboveChromiumCapIsSent(t *testing.T) {
	t.Parallel()
	e, _, err := policy.LoadFile("testdata/valid-max-age-warning.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"chromium-cap": "7200", "above-cap": "7201", "a-day": "86400"} {
		req := preflight(name, "https://app.example.com", "GET", "")
		d, err := e.Decide(&req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(d.AppendHeaders(nil), hdr(policy.HeaderMaxAge, want)) {
			t.Errorf("policy %s: headers %v, want Access-Control-Max-Age: %s", name, d.AppendHeaders(nil), want)
		}
	}
}

// TestLoadExampleConfig: the configuration shipped in deploy/ is clean.
func TestLoadExampleConfig(t *testing.T) {
	t.Parallel()
	e, warnings, err := policy.LoadFile("../deploy/corsauthz.yaml")
	if err != nil {
		t.Fatalf("deploy/corsauthz.yaml: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("deploy/corsauthz.yaml: warning: %v", w)
	}
	if got, want := e.PolicyNames(), []string{"api", "public", "files"}; !slices.Equal(got, want) {
		t.Errorf("PolicyNames() = %q, want %q", got, want)
	}
}

func TestLoadJSON(t *testing.T) {
	t.Parallel()
	e, warnings, err := policy.LoadFile("testdata/valid-all-fields.json")
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	want := policy.Config{
		Policies: []policy.Policy{{
			Name:             "api",
			Match:            policy.Match{Hosts: []string{"api.example.com"}, PathPrefixes: []string{"/v1/"}},
			AllowedOrigins:   []string{"https://app.example.com", "https://*.example.com"},
			AllowedMethods:   []string{"GET", "PUT"},
			AllowedHeaders:   []string{"Content-Type"},
			ExposedHeaders:   []string{"X-Request-Id"},
			AllowCredentials: true,
			MaxAgeInSeconds:  600,
		}},
		DefaultPolicy: "api",
	}
	if got := e.Config(); !equalConfig(got, want) {
		t.Errorf("Config() = %+v, want %+v", got, want)
	}

	// JSON problems are located like YAML ones.
	_, _, err = policy.Load("in.json", []byte(`{"policies": [{"name": "api", "allowed_origins": ["https://app.example.com/"], "max_age": 5}]}`))
	wantErrs := []string{
		`in.json:1:51: policies[0].allowed_origins[0]: origin "https://app.example.com/" has a trailing slash, which browsers never send: did you mean "https://app.example.com"?`,
		`in.json:1:80: policies[0].max_age: unknown field "max_age": did you mean "max_age_seconds"?`,
	}
	var got []string
	for _, fe := range policy.FieldErrors(err) {
		got = append(got, fe.Error())
	}
	if !slices.Equal(got, wantErrs) {
		t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(wantErrs, "\n     "))
	}
}

func equalConfig(a, b policy.Config) bool {
	if a.DefaultPolicy != b.DefaultPolicy || len(a.Policies) != len(b.Policies) {
		return false
	}
	for i := range a.Policies {
		p, q := a.Policies[i], b.Policies[i]
		if p.Name != q.Name || !slices.Equal(p.Match.Hosts, q.Match.Hosts) || !slices.Equal(p.Match.PathPrefixes, q.Match.PathPrefixes) ||
			!slices.Equal(p.AllowedOrigins, q.AllowedOrigins) || !slices.Equal(p.AllowedMethods, q.AllowedMethods) ||
			!slices.Equal(p.AllowedHeaders, q.AllowedHeaders) || !slices.Equal(p.ExposedHeaders, q.ExposedHeaders) ||
			p.AllowCredentials != q.AllowCredentials || p.MaxAgeInSeconds != q.MaxAgeInSeconds ||
			p.AllowPrivateNetwork != q.AllowPrivateNetwork || p.RejectDisallowedOrigins != q.RejectDisallowedOrigins || p.ReportOnly != q.ReportOnly {
			return false
		}
	}
	return true
}

func TestLoadHashAndSource(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/valid-all-fields.json")
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := policy.Load("conf.json", data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got, want := e.Hash(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Hash() = %s, want %s", got, want)
	}
	if got := e.Source(); got != "conf.json" {
		t.Errorf("Source() = %q, want \"conf.json\"", got)
	}
}

func TestLoadFileMissing(t *testing.T) {
	t.Parallel()
	_, _, err := policy.LoadFile("testdata/no-such-file.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}

// TestCompile: a Config built in Go is checked the same way; its errors
// carry a field path but no file position.
func TestCompile(t *testing.T) {
	t.Parallel()
	cfg := &policy.Config{
		Policies: []policy.Policy{
			{Name: "api", AllowedOrigins: []string{"*"}, AllowCredentials: true},
			{Name: "ok", AllowedOrigins: []string{"https://APP.example.com"}},
		},
		DefaultPolicy: "nope",
	}
	e, warnings, err := policy.Compile(cfg)
	if e != nil {
		t.Error("Compile returned an engine for an invalid configuration")
	}
	wantErrs := []*policy.FieldError{
		{Path: "policies[0].allowed_origins[0]", Message: `allowed_origins "*" cannot be used with allow_credentials: browsers refuse "Access-Control-Allow-Origin: *" on credentialed requests, and allowing every origin with cookies would expose your users; list the origins exactly`},
		{Path: "default_policy", Message: `default_policy "nope" names no policy: write one of "api", "ok", or leave it out`},
	}
	got := policy.FieldErrors(err)
	if len(got) != len(wantErrs) {
		t.Fatalf("errors = %v, want %d", got, len(wantErrs))
	}
	for i, fe := range got {
		if *fe != *wantErrs[i] {
			t.Errorf("error %d = %+v, want %+v", i, *fe, *wantErrs[i])
		}
	}
	if got, want := got[1].Error(), `default_policy: default_policy "nope" names no policy: write one of "api", "ok", or leave it out`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if len(warnings) != 1 || warnings[0].Path != "policies[1].allowed_origins[0]" {
		t.Errorf("warnings = %v, want one for policies[1].allowed_origins[0]", warnings)
	}

	cfg.Policies[0].AllowCredentials = false
	cfg.DefaultPolicy = "ok"
	e, _, err = policy.Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if e.Hash() == "" || e.Source() != "" {
		t.Errorf("Hash() = %q, Source() = %q; want a hash and no source", e.Hash(), e.Source())
	}
	req := policy.Request{Method: "GET", Origin: "https://app.example.com"}
	if d, _ := e.Decide(&req); d.Policy != "ok" || d.Kind != policy.KindActualAllowed {
		t.Errorf("Decide = %q %v, want the default policy \"ok\" to allow the normalised origin", d.Policy, d.Kind)
	}
}

func TestFieldErrors(t *testing.T) {
	t.Parallel()
	if got := policy.FieldErrors(nil); got != nil {
		t.Errorf("FieldErrors(nil) = %v", got)
	}
	one := &policy.FieldError{Path: "a", Message: "b"}
	if got := policy.FieldErrors(one); len(got) != 1 || got[0] != one {
		t.Errorf("FieldErrors(one) = %v", got)
	}
	two := &policy.FieldError{File: "f.yaml", Line: 3, Column: 5, Path: "c", Message: "d"}
	if got := policy.FieldErrors(errors.Join(one, two)); !slices.Equal(got, []*policy.FieldError{one, two}) {
		t.Errorf("FieldErrors(joined) = %v", got)
	}
	if got, want := two.Error(), "f.yaml:3:5: c: d"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&policy.FieldError{File: "f.yaml", Message: "m"}).Error(), "f.yaml: m"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestListSuggestionsAreAccepted: the list validate suggests for a list
// written as a string is itself accepted once written in its place.
func TestListSuggestionsAreAccepted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc, field, value string
	}{
		{desc: "methods", field: "allowed_methods", value: "GET, POST"},
		{desc: "quoted methods", field: "allowed_methods", value: `'"GET", "PUT"'`},
		{desc: "origins with a pattern", field: "allowed_origins", value: "https://app.example.com, https://*.example.net"},
		{desc: "any header", field: "allowed_headers", value: `"*"`},
		{desc: "any origin, without credentials", field: "allowed_origins", value: `"*"`},
		{desc: "a wildcard host", field: "match.hosts", value: `"*.api.example.com, api.example.com:8443"`},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			line := "    " + tt.field + ": " + tt.value
			if parent, child, ok := strings.Cut(tt.field, "."); ok {
				line = "    " + parent + ":\n      " + child + ": " + tt.value
			}
			doc := "policies:\n  - name: api\n" + line + "\n"
			if tt.field != "allowed_origins" {
				doc += "    allowed_origins: [https://app.example.com]\n"
			}
			_, _, err := policy.Load("c.yaml", []byte(doc))
			fes := policy.FieldErrors(err)
			if len(fes) != 1 {
				t.Fatalf("%s: got %v, want one error", doc, err)
			}
			_, suggestion, ok := strings.Cut(fes[0].Message, "must be a list: write ")
			if !ok {
				t.Fatalf("no suggestion in %q", fes[0].Message)
			}
			fixed := strings.Replace(doc, tt.value, suggestion, 1)
			if _, _, err := policy.Load("c.yaml", []byte(fixed)); err != nil {
				t.Errorf("the suggestion %s is refused:\n%s\n%v", suggestion, fixed, err)
			}
		})
	}
}
