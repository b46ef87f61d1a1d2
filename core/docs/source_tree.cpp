// Source trees: walk a folder honouring .gitignore and .git/info/exclude, skip what is not source
// text, keep relative paths and line numbers, in sorted order.
#include <QFile>
#include <QFileInfo>
#include <QMap>
#include <QSet>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <dirent.h>
#include <sys/stat.h>

#include "core/common/input_limits.h"
#include "core/docs/docs_internal.h"
#include "core/docs/gitignore.h"

namespace folio::docs {

namespace {

// .gitignore and .git/info/exclude: real ones are a few KiB (see add_patterns)
constexpr qint64 kMaxPatternFileBytes = 1 << 20;

struct Candidate {
  QString rel;
  QString abs;
  int64_t size = 0;
};

// Why an entry that is neither a folder nor a regular file (after links) is left out, named by type.
QString special_entry_reason(const QString& abs, SkipKind* kind) {
  const QByteArray path = QFile::encodeName(abs);
  struct stat st {};
  *kind = SkipKind::Unreadable;
  if (::stat(path.constData(), &st) != 0) {
    const int err = errno;
    struct stat lst {};
    if (::lstat(path.constData(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
      *kind = SkipKind::Symlink;
      return err == ELOOP ? QString("symbolic link loop (its links point back at each other)")
                          : QString("broken symbolic link");
    }
    return QString("cannot be read (%1)").arg(QString::fromLocal8Bit(std::strerror(err)));
  }
  if (S_ISFIFO(st.st_mode)) return "a FIFO (named pipe), not a regular file";
  if (S_ISCHR(st.st_mode)) return "a character device, not a regular file";
  if (S_ISBLK(st.st_mode)) return "a block device, not a regular file";
  if (S_ISSOCK(st.st_mode)) return "a socket, not a regular file";
  return "not a regular file";
}

struct Walker {
  QString canonical_root;
  QVector<Candidate> files;
  QVector<SkippedFile> skipped;
  const LoadOptions* options = nullptr;
  QString root;

  QSet<QString> unapplied_patterns;  // pattern files listed as skipped by add_patterns (not listed twice)

  void skip(const QString& rel, SkipKind kind, const QString& reason) { skipped.push_back({rel, reason, kind}); }

  bool inside_root(const QString& canonical) const {
    return canonical == canonical_root || canonical.startsWith(canonical_root.endsWith('/') ? canonical_root
                                                                                            : canonical_root + '/');
  }

  // Adds the patterns of a .gitignore-style file (rel: its path in the tree, base: the folder its
  // patterns are relative to) to `stack`. Read only where it lies inside the tree (a link out of
  // it is not followed) and up to kMaxPatternFileBytes: every file of the walk is matched against
  // every pattern, so a file of millions of patterns would make the walk quadratic. One too large
  // or unreadable is listed as skipped, with its patterns not applied.
  void add_patterns(const QFileInfo& file, const QString& rel, const QString& base, GitignoreStack& stack) {
    if (!file.isFile() || !inside_root(file.canonicalFilePath())) return;
    if (file.size() > kMaxPatternFileBytes) {
      skip(rel, SkipKind::TooLarge, "larger than 1 MiB: its patterns were not applied");
      unapplied_patterns.insert(rel);
      return;
    }
    QFile f(file.filePath());
    if (!f.open(QIODevice::ReadOnly)) {
      skip(rel, SkipKind::Unreadable,
           QString("cannot be read (%1): its patterns were not applied").arg(f.errorString()));
      unapplied_patterns.insert(rel);
      return;
    }
    stack.add(parse_gitignore(QString::fromUtf8(f.read(kMaxPatternFileBytes)), base, rel));
  }

  void walk(const QString& dir_abs, const QString& rel_prefix, GitignoreStack stack) {
    detail::check_cancel(*options, root);
    add_patterns(QFileInfo(dir_abs + "/.gitignore"), rel_prefix + ".gitignore", rel_prefix, stack);
    list_undecodable_names(dir_abs, rel_prefix);
    const QFileInfoList entries =
        QDir(dir_abs).entryInfoList(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden | QDir::System, QDir::Name);
    for (const QFileInfo& e : entries) {
      const QString name = e.fileName();
      const QString rel = rel_prefix + name;
      if (name == ".git" || name == ".hg" || name == ".svn") {
        skip(e.isDir() ? rel + "/" : rel, SkipKind::GitFolder,
             QString("version-control data (%1), not source").arg(name));
        continue;
      }
      const bool is_dir = e.isDir();
      const GitignoreRule* rule = nullptr;
      if (stack.ignored(rel, is_dir, &rule)) {
        skip(is_dir ? rel + "/" : rel, SkipKind::Ignored,
             QString("ignored by %1 (line %2: %3)").arg(rule->source).arg(rule->line).arg(rule->pattern));
        continue;
      }
      if (e.isSymLink()) {
        const QString target = e.canonicalFilePath();
        if (target.isEmpty()) {
          SkipKind kind = SkipKind::Symlink;
          skip(rel, kind, special_entry_reason(e.filePath(), &kind));
          continue;
        }
        if (!inside_root(target)) {
          skip(rel, SkipKind::Symlink,
               QString("symbolic link to %1, outside the folder (not followed)").arg(detail::shown(target)));
          continue;
        }
        if (is_dir) {
          skip(rel + "/", SkipKind::Symlink,
               "symbolic link to a folder inside the tree (not followed: its files are read where they are)");
          continue;
        }
      }
      if (is_dir) {
        walk(e.filePath(), rel + "/", stack);
      } else if (e.isFile()) {
        if (!unapplied_patterns.contains(rel)) files.push_back({rel, e.filePath(), e.size()});  // else listed
      } else {
        SkipKind kind = SkipKind::Unreadable;
        const QString reason = special_entry_reason(e.filePath(), &kind);
        skip(rel, kind, reason);
      }
    }
  }

  // A name that is not valid in the file-name encoding (UTF-8) cannot be held in a QString, so
  // Qt's listing drops it: such names are read raw and listed as skipped, shown with \x escapes.
  void list_undecodable_names(const QString& dir_abs, const QString& rel_prefix) {
    DIR* dir = ::opendir(QFile::encodeName(dir_abs).constData());
    if (dir == nullptr) return;
    while (const dirent* ent = ::readdir(dir)) {
      const QByteArray raw(ent->d_name);
      if (raw == "." || raw == "..") continue;
      if (QFile::encodeName(QFile::decodeName(raw)) == raw) continue;
      skip(rel_prefix + QString::fromStdString(folio::printable_name(raw.toStdString())), SkipKind::Unreadable,
           "its name is not valid UTF-8 (shown with \\x escapes); rename it to read it");
    }
    ::closedir(dir);
  }
};

QString skip_kind_name(SkipKind kind) {
  switch (kind) {
    case SkipKind::Ignored: return "ignored";
    case SkipKind::GitFolder: return "version control";
    case SkipKind::Binary: return "binary";
    case SkipKind::TooLarge: return "too large";
    case SkipKind::Generated: return "generated";
    case SkipKind::Empty: return "empty";
    case SkipKind::Symlink: return "symbolic link";
    case SkipKind::Unreadable: return "unreadable";
  }
  return "other";
}

// Generated files known by name; returns the reason or "".
QString generated_by_name(const QString& rel) {
  const QString name = rel.section('/', -1).toLower();
  if (name.endsWith(".min.js") || name.endsWith(".min.css") || name.endsWith(".min.mjs"))
    return QString("minified (%1)").arg(name.section('.', -2));
  if (name.endsWith(".js.map") || name.endsWith(".css.map")) return "generated (source map)";
  static const QStringList locks = {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "cargo.lock",
                                    "poetry.lock",       "composer.lock", "gemfile.lock", "go.sum"};
  if (locks.contains(name)) return "generated (lock file of a package manager)";
  return {};
}

}  // namespace

Document load_source_tree(const QString& root, const LoadOptions& options) {
  using detail::shown;
  const QFileInfo info(root);
  if (!info.exists())
    throw DocumentError(DocumentProblem::NotFound, root,
                        QString("%1: folder not found; check the path and add it again").arg(shown(root)));
  if (!info.isDir())
    throw DocumentError(DocumentProblem::Unreadable, root,
                        QString("%1: not a folder; add it as a document instead").arg(shown(root)));
  if (!info.isReadable())
    throw DocumentError(DocumentProblem::Unreadable, root,
                        QString("%1: the folder cannot be read; check its permissions").arg(shown(root)));

  Walker walker;
  walker.canonical_root = info.canonicalFilePath();
  walker.options = &options;
  walker.root = root;
  // The repository's own exclude file (.git/info/exclude) holds patterns as a .gitignore does, for
  // files a developer keeps out of git without committing a rule; git reads it before (so below)
  // every .gitignore of the tree, and so does the walk. Read only where it lies inside the tree (a
  // .git linked to elsewhere is not followed), as for .gitignore.
  GitignoreStack excludes;
  walker.add_patterns(QFileInfo(info.absoluteFilePath() + "/.git/info/exclude"), ".git/info/exclude", QString(),
                      excludes);
  walker.walk(info.absoluteFilePath(), QString(), excludes);
  std::sort(walker.files.begin(), walker.files.end(),
            [](const Candidate& a, const Candidate& b) { return a.rel < b.rel; });

  Document doc;
  doc.path = root;
  doc.title = QDir(walker.canonical_root).dirName();
  if (doc.title.isEmpty()) doc.title = walker.canonical_root;
  doc.kind = DocumentKind::SourceTree;
  QCryptographicHash hash(QCryptographicHash::Sha256);
  const int total = static_cast<int>(walker.files.size());
  int done = 0;
  for (const Candidate& c : std::as_const(walker.files)) {
    detail::check_cancel(options, root);
    detail::report(options, done++, total);
    auto skip = [&](SkipKind kind, const QString& reason) { walker.skipped.push_back({c.rel, reason, kind}); };
    if (c.size > options.max_source_file_bytes) {
      skip(SkipKind::TooLarge, QString("larger than %1 (%2 KiB)")
                                   .arg(options.max_source_file_bytes == (1 << 20)
                                            ? QString("1 MiB")
                                            : QString("%1 bytes").arg(options.max_source_file_bytes))
                                   .arg((c.size + 1023) / 1024));
      continue;
    }
    if (c.size == 0) {
      skip(SkipKind::Empty, "empty file");
      continue;
    }
    const QString by_name = generated_by_name(c.rel);
    if (!by_name.isEmpty()) {
      skip(SkipKind::Generated, by_name);
      continue;
    }
    QFile f(c.abs);
    if (!f.open(QIODevice::ReadOnly)) {
      skip(SkipKind::Unreadable, QString("cannot be read (%1)").arg(f.errorString()));
      continue;
    }
    const QByteArray bytes = f.readAll();
    const QByteArray head = bytes.left(8192);
    const bool has_wide_bom = head.startsWith("\xFF\xFE") || head.startsWith("\xFE\xFF") ||
                              head.startsWith(QByteArray("\x00\x00\xFE\xFF", 4));
    if (!has_wide_bom && head.contains('\0')) {
      skip(SkipKind::Binary, "binary (NUL bytes in the first 8 KiB)");
      continue;
    }
    const DecodedText decoded = decode_text(bytes);
    if (!decoded.ok) {
      skip(SkipKind::Binary, QString("binary (%1)").arg(decoded.reason));
      continue;
    }
    const QStringList lines = split_lines(decoded.text);
    int long_line = -1;
    for (int i = 0; i < lines.size(); ++i)
      if (lines[i].size() > options.max_line_length) {
        long_line = i;
        break;
      }
    if (long_line >= 0) {
      skip(SkipKind::Generated, QString("generated or minified (line %1 has %2 characters, more than %3)")
                                    .arg(long_line + 1)
                                    .arg(lines[long_line].size())
                                    .arg(options.max_line_length));
      continue;
    }
    QString marker;
    for (int i = 0; i < std::min<int>(5, static_cast<int>(lines.size())) && marker.isEmpty(); ++i)
      if (lines[i].contains("DO NOT EDIT") || lines[i].contains("@generated"))
        marker = QString("generated (marked on line %1: \"%2\")").arg(i + 1).arg(lines[i].trimmed().left(80));
    if (!marker.isEmpty()) {
      skip(SkipKind::Generated, marker);
      continue;
    }
    if (decoded.text.trimmed().isEmpty()) {
      skip(SkipKind::Empty, "only white space");
      continue;
    }
    FileEntry entry;
    entry.path = c.rel;
    entry.language = language_for_file(c.rel);
    entry.line_count = static_cast<int>(lines.size());
    entry.bytes = bytes.size();
    entry.encoding = decoded.encoding;
    hash.addData(c.rel.toUtf8());
    hash.addData(QByteArray(1, '\0'));
    hash.addData(bytes);
    hash.addData(QByteArray(1, '\0'));
    detail::append_line_sections(lines, c.rel, entry.language, options.section_lines, &doc.sections);
    if (decoded.encoding == "Latin-1")
      doc.notices << QString("%1 is not valid UTF-8 and was read as Latin-1 (ISO 8859-1)").arg(c.rel);
    doc.files.push_back(std::move(entry));
  }
  detail::report(options, total, total);
  std::sort(walker.skipped.begin(), walker.skipped.end(),
            [](const SkippedFile& a, const SkippedFile& b) { return a.path < b.path; });
  doc.skipped = std::move(walker.skipped);
  doc.page_count = static_cast<int>(doc.files.size());
  doc.content_hash = QString::fromLatin1(hash.result().toHex());
  if (doc.files.isEmpty()) {
    QMap<QString, int> by_kind;
    for (const SkippedFile& s : std::as_const(doc.skipped)) by_kind[skip_kind_name(s.kind)] += 1;
    QStringList counts;
    for (auto it = by_kind.cbegin(); it != by_kind.cend(); ++it) counts << QString("%1 %2").arg(it.value()).arg(it.key());
    throw DocumentError(DocumentProblem::Empty, root,
                        QString("%1: no text or source files to read%2; check the folder and its .gitignore")
                            .arg(shown(root))
                            .arg(counts.isEmpty() ? QString(" (the folder is empty)")
                                                  : QString(" (%1 skipped: %2)").arg(doc.skipped.size()).arg(counts.join(", "))));
  }
  if (!doc.skipped.isEmpty())
    doc.notices << QString("%1: %2 file%3 or folder%3 left out (ignored, binary, generated or too large); see the "
                           "list of skipped files")
                       .arg(doc.title)
                       .arg(doc.skipped.size())
                       .arg(doc.skipped.size() == 1 ? "" : "s");
  return doc;
}

Document load_document(const QString& path, const LoadOptions& options) {
  const QFileInfo info(path);
  // FIFOs, devices and link loops are refused by type before the sniffing read below opens them.
  if (!info.isDir()) detail::require_file(info, path, "a file");
  if (!info.exists())
    throw DocumentError(DocumentProblem::NotFound, path,
                        QString("%1: not found; check the path and add it again").arg(detail::shown(path)));
  if (info.isDir()) return load_source_tree(path, options);
  if (info.suffix().compare("pdf", Qt::CaseInsensitive) == 0) return load_pdf(path, options);
  QFile f(path);
  if (f.open(QIODevice::ReadOnly) && f.read(5) == "%PDF-") {
    f.close();
    return load_pdf(path, options);
  }
  return load_text_file(path, options);
}

}  // namespace folio::docs
