// Package auth issues and verifies Tandem's access tokens: JWTs signed with
// HS256 whose claims are a subject (sub), an expiry (exp, required), a token
// id (jti, required: revocation names it) and per-document permissions,
//
//	"docs": {"<document id>" | "*": "read" | "write" | "admin"}
//
// An Authority holds the secret and the set of revoked token ids. Verified
// Claims implement repo.PeerAccess (CanRead, CanWrite), so a server passes
// them straight to repo.Repo.Accept. A document that a token does not cover
// does not exist for its bearer.
//
// Any JWT library can mint tokens the server accepts, as long as it signs
// with HS256 and the same secret and sets exp and jti.
package auth
