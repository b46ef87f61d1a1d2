#include "ui/remote_connection.h"

#include <QElapsedTimer>
#include <QObject>

#include "core/remote/remote_engine.h"

namespace folio::ui {

QString remote_error_text(const std::exception& e, const QString& url) {
  const auto* r = dynamic_cast<const folio::remote::RemoteError*>(&e);
  if (r == nullptr) {
    const auto* fe = dynamic_cast<const folio::Error*>(&e);
    if (fe != nullptr && fe->code() == ErrorCode::BadArgument)
      return QObject::tr("The server URL is not valid: %1. It should look like http://host:8080/v1.")
          .arg(QString::fromStdString(e.what()));
    return QString::fromStdString(e.what());
  }
  const QString detail = QString::fromStdString(r->detail());
  using folio::remote::RemoteFailure;
  switch (r->failure()) {
    case RemoteFailure::Unreachable:
      return QObject::tr(
                 "Cannot reach a server at %1 (%2). Is the server running, and are the host and port "
                 "right?")
          .arg(url, detail);
    case RemoteFailure::WrongProtocol:
      return QObject::tr(
                 "The server at %1 answered, but not as an OpenAI-compatible API (%2). The URL should be "
                 "the API's base, e.g. http://host:8080/v1.")
          .arg(url, detail);
    case RemoteFailure::Unauthorized:
      return QObject::tr("The server at %1 refused the API key (%2). Enter the key the server expects.")
          .arg(url, detail);
    case RemoteFailure::ModelNotFound:
      return QObject::tr(
                 "The server at %1 does not serve that model (%2). Leave the model empty to use the "
                 "first one it lists, or enter one of its models.")
          .arg(url, detail);
    case RemoteFailure::ContextTooLong:
      return QObject::tr(
                 "The prompt is longer than the server's context (%1). Remove documents, ask for fewer "
                 "answer tokens, or use a server with a larger context.")
          .arg(detail);
    case RemoteFailure::Busy:
      return QObject::tr("The server at %1 is busy (%2). Try again shortly.").arg(url, detail);
    case RemoteFailure::Refused:
      break;
  }
  return QObject::tr("The server at %1 refused the request (%2).").arg(url, detail);
}

RemoteCheck check_remote_engine(const QString& url, const QString& api_key, const QString& model, int timeout_s) {
  RemoteCheck c;
  QElapsedTimer timer;
  timer.start();
  const QString base = url.trimmed();
  if (base.isEmpty()) {
    c.message = QObject::tr("Enter the server's URL, e.g. http://host:8080/v1.");
    return c;
  }
  try {
    folio::remote::RemoteOptions o;
    o.url = base.toStdString();
    o.api_key = api_key.trimmed().toStdString();
    o.model = model.trimmed().toStdString();
    o.connect_timeout_s = timeout_s;
    o.read_timeout_s = timeout_s;
    folio::remote::RemoteEngine engine(o);
    const folio::remote::RemoteModel m = engine.connect();
    c.ok = true;
    c.model = QString::fromStdString(m.id);
    c.context_tokens = m.context_tokens;
    c.elapsed_ms = static_cast<double>(timer.nsecsElapsed()) / 1e6;
    c.message =
        m.context_tokens > 0
            ? QObject::tr("Connected: %1 serves %2 (context %3 tokens), answered in %4 ms.")
                  .arg(base, c.model)
                  .arg(m.context_tokens)
                  .arg(qRound64(c.elapsed_ms))
            : QObject::tr("Connected: %1 serves %2, answered in %3 ms.").arg(base, c.model).arg(qRound64(c.elapsed_ms));
  } catch (const std::exception& e) {
    c.elapsed_ms = static_cast<double>(timer.nsecsElapsed()) / 1e6;
    c.message = remote_error_text(e, base);
  }
  return c;
}

}  // namespace folio::ui
