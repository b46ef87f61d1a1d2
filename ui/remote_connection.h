// The remote engine as the app shows it: a connection check for Settings ▸ Test connection and
// the wording of the remote engine's failures for the app's controls (the Settings fields rather
// than folio-cli's options). Built where the remote engine is (FOLIO_UI_REMOTE).
#pragma once

#include <QString>
#include <cstdint>
#include <exception>

namespace folio::ui {

struct RemoteCheck {
  bool ok = false;
  QString message;             // one sentence or two: what was found, or what is wrong and what to do
  QString model;               // the model that will answer (ok only)
  int64_t context_tokens = 0;  // its context as the server says (0 = not said)
  double elapsed_ms = 0.0;
};

// GET {url}/models with the key: reachable, an OpenAI-compatible API, key accepted, model served.
// Blocks for up to timeout_s: run it off the GUI thread.
RemoteCheck check_remote_engine(const QString& url, const QString& api_key, const QString& model, int timeout_s = 5);

// A failure of the remote engine (folio::remote::RemoteError or another folio::Error) worded for
// the app. Never contains the API key (the engine's messages do not carry it).
QString remote_error_text(const std::exception& e, const QString& url);

}  // namespace folio::ui
