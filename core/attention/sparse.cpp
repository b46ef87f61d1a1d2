#include "core/attention/sparse.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <queue>

#include "core/common/error.h"

namespace folio::sparse {

namespace {

int n_qtiles_of(int64_t n) { return static_cast<int>((n + kQueryTile - 1) / kQueryTile); }
int64_t first_pos(int64_t pos0, int i) { return pos0 + static_cast<int64_t>(i) * kQueryTile; }
int64_t last_pos(int64_t n, int64_t pos0, int i) {
  return pos0 + std::min<int64_t>(n, static_cast<int64_t>(i + 1) * kQueryTile) - 1;
}

typedef float v8f __attribute__((vector_size(32)));

// Eight lanes where the length allows (the CPU backend's scores dominate estimation time).
float dot(const float* a, const float* b, int d) {
  int i = 0;
  float s = 0.0f;
  if (d >= 8) {
    v8f acc = {};
    for (; i + 8 <= d; i += 8) {
      v8f x, y;
      __builtin_memcpy(&x, a + i, sizeof x);
      __builtin_memcpy(&y, b + i, sizeof y);
      acc += x * y;
    }
    for (int l = 0; l < 8; ++l) s += acc[l];
  }
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

// Softmax attention of one query over keys [0, p] as fp32 probabilities (out has p + 1 entries).
void softmax_row(const float* q, const float* k, int64_t k_stride, int64_t p, int hd, float* out) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float mx = -INFINITY;
  for (int64_t j = 0; j <= p; ++j) {
    out[j] = dot(q, k + j * k_stride, hd) * scale;
    mx = std::max(mx, out[j]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j <= p; ++j) {
    out[j] = std::exp(out[j] - mx);
    sum += out[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j <= p; ++j) out[j] *= inv;
}

// Attention of one query over the keys of `ranges` (inclusive, ascending, disjoint), in key order.
void row_attention(const float* q, const float* k, const float* v, int64_t kv_stride, int hd,
                   const std::vector<std::pair<int64_t, int64_t>>& ranges, std::vector<float>& scores, float* out) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  scores.clear();
  float mx = -INFINITY;
  for (auto [a, b] : ranges)
    for (int64_t j = a; j <= b; ++j) {
      const float s = dot(q, k + j * kv_stride, hd) * scale;
      scores.push_back(s);
      mx = std::max(mx, s);
    }
  float sum = 0.0f;
  for (float& s : scores) {
    s = std::exp(s - mx);
    sum += s;
  }
  for (int d = 0; d < hd; ++d) out[d] = 0.0f;
  size_t idx = 0;
  for (auto [a, b] : ranges)
    for (int64_t j = a; j <= b; ++j, ++idx) {
      const float w = scores[idx];
      const float* vj = v + j * kv_stride;
      for (int d = 0; d < hd; ++d) out[d] += w * vj[d];
    }
  const float inv = 1.0f / sum;
  for (int d = 0; d < hd; ++d) out[d] *= inv;
}

// Marks per query tile, turned into a TileList.
class TileSet {
 public:
  TileSet(int64_t n, int64_t pos0) : n_(n), pos0_(pos0), nq_(n_qtiles_of(n)) {
    rows_.resize(static_cast<size_t>(nq_));
    for (int i = 0; i < nq_; ++i) rows_[static_cast<size_t>(i)].assign(static_cast<size_t>(last_key_tile(n, pos0, i)) + 1, 0);
  }
  int nq() const { return nq_; }
  int last(int i) const { return static_cast<int>(rows_[static_cast<size_t>(i)].size()) - 1; }
  bool has(int i, int t) const { return rows_[static_cast<size_t>(i)][static_cast<size_t>(t)] != 0; }
  // Marks tiles [a, b] of query tile i (clipped); returns how many were new.
  int64_t mark(int i, int64_t a, int64_t b, bool dry_run = false) {
    auto& r = rows_[static_cast<size_t>(i)];
    a = std::max<int64_t>(a, 0);
    b = std::min<int64_t>(b, static_cast<int64_t>(r.size()) - 1);
    int64_t added = 0;
    for (int64_t t = a; t <= b; ++t)
      if (r[static_cast<size_t>(t)] == 0) {
        ++added;
        if (!dry_run) r[static_cast<size_t>(t)] = 1;
      }
    count_ += dry_run ? 0 : added;
    return added;
  }
  int64_t count() const { return count_; }
  TileList list() const {
    TileList l;
    l.n = n_;
    l.pos0 = pos0_;
    l.offsets.push_back(0);
    for (const auto& r : rows_) {
      for (size_t t = 0; t < r.size(); ++t)
        if (r[t]) l.tiles.push_back(static_cast<int32_t>(t));
      l.offsets.push_back(static_cast<int32_t>(l.tiles.size()));
    }
    return l;
  }

 private:
  int64_t n_, pos0_;
  int nq_;
  int64_t count_ = 0;
  std::vector<std::vector<uint8_t>> rows_;
};

void mark_mandatory(TileSet& s, int64_t n, int64_t pos0) {
  for (int i = 0; i < s.nq(); ++i) {
    s.mark(i, 0, 0);
    s.mark(i, first_pos(pos0, i) / kKeyTile, last_pos(n, pos0, i) / kKeyTile);
  }
}

// Key tiles a slash band b covers for query tile i: keys [P0 - 64 b - 63, P1 - 64 b].
std::pair<int64_t, int64_t> band_tiles(int64_t n, int64_t pos0, int i, int64_t b) {
  const int64_t lo = first_pos(pos0, i) - kKeyTile * b - (kKeyTile - 1);
  const int64_t hi = last_pos(n, pos0, i) - kKeyTile * b;
  if (hi < 0) return {1, 0};
  return {std::max<int64_t>(lo, 0) / kKeyTile, hi / kKeyTile};
}

int64_t mark_vertical(TileSet& s, int64_t t, bool dry) {
  int64_t added = 0;
  for (int i = 0; i < s.nq(); ++i)
    if (t <= s.last(i)) added += s.mark(i, t, t, dry);
  return added;
}

int64_t mark_band(TileSet& s, int64_t n, int64_t pos0, int64_t b, bool dry) {
  int64_t added = 0;
  for (int i = 0; i < s.nq(); ++i) {
    auto [a, e] = band_tiles(n, pos0, i, b);
    if (a <= e) added += s.mark(i, a, e, dry);
  }
  return added;
}

int64_t floor_div64(int64_t x) { return x >= 0 ? x / kKeyTile : -((-x + kKeyTile - 1) / kKeyTile); }

}  // namespace

int64_t to_fixed(float v) { return std::llrint(static_cast<double>(v) * kFixedOne); }

int32_t cell_rank(const int32_t* vrank, const int32_t* brank, int64_t nk, int64_t n, int64_t pos0, int i, int64_t t,
                  bool last_tile_dense) {
  const int64_t p0 = first_pos(pos0, i), p1 = last_pos(n, pos0, i);
  if (t == 0 || (t >= p0 / kKeyTile && t <= p1 / kKeyTile) || (last_tile_dense && i == n_qtiles_of(n) - 1)) return -1;
  int32_t r = vrank[t];
  const int64_t b_hi = std::min<int64_t>((p1 - kKeyTile * t) / kKeyTile, nk - 1);
  const int64_t b_lo = std::max<int64_t>(floor_div64(p0 - kKeyTile * t - (2 * kKeyTile - 1)) + 1, 0);
  for (int64_t b = b_lo; b <= b_hi; ++b) r = std::min(r, brank[b]);
  return r;
}

SampleSums sample_sums(int last_queries, const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k,
                       int64_t k_stride, int hd) {
  const int64_t kv_len = pos0 + n;
  SampleSums s;
  s.rows = std::min<int64_t>(std::max(last_queries, 1), n);
  const int64_t r0 = n - s.rows;
  std::vector<double> col(static_cast<size_t>(kv_len), 0.0), diag(static_cast<size_t>(kv_len), 0.0);
  std::vector<float> row(static_cast<size_t>(kv_len));
  for (int64_t r = 0; r < s.rows; ++r) {
    const int64_t p = pos0 + r0 + r;
    softmax_row(q + (r0 + r) * q_stride, k, k_stride, p, hd, row.data());
    for (int64_t j = 0; j <= p; ++j) {
      col[static_cast<size_t>(j)] += row[static_cast<size_t>(j)];
      diag[static_cast<size_t>(p - j)] += row[static_cast<size_t>(j)];
    }
  }
  s.col.assign(col.begin(), col.end());
  s.diag.assign(diag.begin(), diag.end());
  return s;
}

HeadPlan select_from_sums(const HeadBudget& b, const float* col, const float* diag, int64_t rows, int64_t n,
                          int64_t pos0) {
  const int64_t kv_len = pos0 + n;
  const int64_t nk = (kv_len + kKeyTile - 1) / kKeyTile;
  const int nq = n_qtiles_of(n);
  // units: key tiles (verticals) u = 0 .. nk - 1 and distance bands nk + b (slashes)
  std::vector<float> score(static_cast<size_t>(2 * nk), 0.0f);
  std::vector<int64_t> mass(static_cast<size_t>(2 * nk), 0);  // the sample's mass per key tile / band
  for (int64_t u = 0; u < nk; ++u)
    for (int64_t j = u * kKeyTile; j < std::min<int64_t>((u + 1) * kKeyTile, kv_len); ++j) {
      score[static_cast<size_t>(u)] = std::max(score[static_cast<size_t>(u)], col[j]);
      score[static_cast<size_t>(nk + u)] = std::max(score[static_cast<size_t>(nk + u)], diag[j]);
      mass[static_cast<size_t>(u)] += to_fixed(col[j]);
      mass[static_cast<size_t>(nk + u)] += to_fixed(diag[j]);
    }
  // the order in which units are taken: forced ones first, then candidates
  std::vector<int32_t> order;
  int64_t forced = 0;
  const bool triangular = b.pattern == Pattern::Triangular;
  if (triangular) {
    for (int64_t u = 0; u < std::min<int64_t>(b.sink_tiles, nk); ++u) order.push_back(static_cast<int32_t>(u));
    const int64_t w = std::min<int64_t>(std::max(b.window_tiles, 1), nk);
    for (int64_t bb = 0; bb < w; ++bb) order.push_back(static_cast<int32_t>(nk + bb));
    forced = static_cast<int64_t>(order.size());
    for (int64_t bb = w; bb < nk; ++bb) order.push_back(static_cast<int32_t>(nk + bb));  // the window grows
  } else {
    order = {0, static_cast<int32_t>(nk)};  // sinks and the diagonal
    forced = 2;
    std::vector<int32_t> cands;
    for (int64_t u = 0; u < 2 * nk; ++u)
      if (u != 0 && u != nk && score[static_cast<size_t>(u)] > 0.0f) cands.push_back(static_cast<int32_t>(u));
    std::sort(cands.begin(), cands.end(), [&](int32_t x, int32_t y) {
      const float sx = score[static_cast<size_t>(x)], sy = score[static_cast<size_t>(y)];
      return sx != sy ? sx > sy : x < y;
    });
    order.insert(order.end(), cands.begin(), cands.end());
  }
  const int64_t K = static_cast<int64_t>(order.size());
  std::vector<int32_t> rank(static_cast<size_t>(2 * nk), kNoRank);
  for (int64_t r = 0; r < K; ++r) rank[static_cast<size_t>(order[static_cast<size_t>(r)])] = static_cast<int32_t>(r);
  // tiles listed by a prefix of k units: cells whose smallest covering rank is below k
  std::vector<int64_t> hist(static_cast<size_t>(K) + 1, 0);
  int64_t mandatory = 0;
  for (int i = 0; i < nq; ++i)
    for (int64_t t = 0; t <= last_key_tile(n, pos0, i); ++t) {
      const int32_t r = cell_rank(rank.data(), rank.data() + nk, nk, n, pos0, i, t, triangular);
      if (r < 0) ++mandatory;
      else if (r < K) ++hist[static_cast<size_t>(r)];
    }
  // the sample's mass a prefix keeps. Interval-Slash: the key tiles listed for the last query
  // tile (where the sample rows are), each counted once however many units cover it.
  // Triangular: per row, the sinks and the keys within the window (the units' own masses).
  std::vector<int64_t> mhist(static_cast<size_t>(K) + 1, 0);
  int64_t mandatory_mass = 0;
  if (triangular) {
    for (int64_t r = 0; r < K; ++r) mhist[static_cast<size_t>(r)] = mass[static_cast<size_t>(order[static_cast<size_t>(r)])];
  } else {
    for (int64_t t = 0; t <= last_key_tile(n, pos0, nq - 1); ++t) {
      const int32_t r = cell_rank(rank.data(), rank.data() + nk, nk, n, pos0, nq - 1, t, false);
      const int64_t m = mass[static_cast<size_t>(t)];
      if (r < 0) mandatory_mass += m;
      else if (r < K) mhist[static_cast<size_t>(r)] += m;
    }
  }
  std::vector<int64_t> count(static_cast<size_t>(K) + 1), cum(static_cast<size_t>(K) + 1);
  count[0] = mandatory;
  cum[0] = mandatory_mass;
  for (int64_t r = 0; r < K; ++r) {
    count[static_cast<size_t>(r) + 1] = count[static_cast<size_t>(r)] + hist[static_cast<size_t>(r)];
    cum[static_cast<size_t>(r) + 1] = cum[static_cast<size_t>(r)] + mhist[static_cast<size_t>(r)];
  }
  const Limits lim = limits(b, rows, causal_tiles(n, pos0), nq, pos0 + n);
  int64_t k_mass = K, k_min = K;
  for (int64_t k = forced; k <= K; ++k)
    if (cum[static_cast<size_t>(k)] >= lim.threshold) {
      k_mass = k;
      break;
    }
  for (int64_t k = forced; k <= K; ++k)
    if (count[static_cast<size_t>(k)] >= lim.min_tiles) {
      k_min = k;
      break;
    }
  int64_t kstar = std::max(k_mass, k_min);
  const int64_t max_tiles = std::max(lim.max_tiles, count[static_cast<size_t>(forced)]);
  while (kstar > forced && count[static_cast<size_t>(kstar)] > max_tiles) --kstar;

  HeadPlan plan;
  plan.pattern = triangular ? Pattern::Triangular : Pattern::IntervalSlash;
  for (int64_t r = 0; r < kstar; ++r) {
    const int32_t u = order[static_cast<size_t>(r)];
    if (u < nk) plan.vertical_tiles.push_back(u);
    else plan.slash_bands.push_back(static_cast<int32_t>(u - nk));
  }
  std::sort(plan.vertical_tiles.begin(), plan.vertical_tiles.end());
  std::sort(plan.slash_bands.begin(), plan.slash_bands.end());
  TileList& l = plan.list;
  l.n = n;
  l.pos0 = pos0;
  l.offsets.push_back(0);
  for (int i = 0; i < nq; ++i) {
    for (int64_t t = 0; t <= last_key_tile(n, pos0, i); ++t)
      if (cell_rank(rank.data(), rank.data() + nk, nk, n, pos0, i, t, triangular) < kstar)
        l.tiles.push_back(static_cast<int32_t>(t));
    l.offsets.push_back(static_cast<int32_t>(l.tiles.size()));
  }
  plan.mass_reached = cum[static_cast<size_t>(kstar)] >= lim.threshold;
  plan.est_mass = std::min(1.0, static_cast<double>(cum[static_cast<size_t>(kstar)]) / (kFixedOne * static_cast<double>(rows)));
  return plan;
}

Limits limits(const HeadBudget& b, int64_t rows, int64_t causal, int64_t n_qtiles, int64_t kv_len) {
  Limits l;
  l.threshold = std::llrint(b.mass_target * static_cast<double>(rows) * kFixedOne);
  l.min_tiles = static_cast<int64_t>(std::ceil(b.min_density * static_cast<double>(causal)));
  l.max_tiles = std::max<int64_t>(1, static_cast<int64_t>(std::floor(b.max_density * static_cast<double>(causal))));
  if (b.max_keys > 0) l.max_tiles = std::min(l.max_tiles, n_qtiles * cap_tiles_per_query(b.max_keys, b.grow_from, kv_len));
  l.min_tiles = std::min(l.min_tiles, l.max_tiles);
  return l;
}

PooledScores pooled_scores(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, int64_t k_stride,
                           int hd) {
  const int64_t kv_len = pos0 + n;
  const int nq = n_qtiles_of(n);
  PooledScores ps;
  ps.n_ktiles = (kv_len + kKeyTile - 1) / kKeyTile;
  ps.p.assign(static_cast<size_t>(nq) * static_cast<size_t>(ps.n_ktiles), 0.0f);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<float> qbar(static_cast<size_t>(hd));
  std::vector<double> lse(static_cast<size_t>(ps.n_ktiles));
  for (int i = 0; i < nq; ++i) {
    const int64_t r0 = static_cast<int64_t>(i) * kQueryTile, r1 = std::min<int64_t>(n, r0 + kQueryTile);
    std::fill(qbar.begin(), qbar.end(), 0.0f);
    for (int64_t r = r0; r < r1; ++r)
      for (int d = 0; d < hd; ++d) qbar[static_cast<size_t>(d)] += q[r * q_stride + d];
    for (float& x : qbar) x /= static_cast<float>(r1 - r0);
    const int64_t p1 = last_pos(n, pos0, i);
    const int last = last_key_tile(n, pos0, i);
    double mx = -INFINITY;
    for (int t = 0; t <= last; ++t) {
      // log-sum-exp of the tile's keys the tile's last query may see
      const int64_t j0 = static_cast<int64_t>(t) * kKeyTile, j1 = std::min<int64_t>(j0 + kKeyTile - 1, p1);
      double m = -INFINITY;
      std::vector<double> s(static_cast<size_t>(j1 - j0 + 1));
      for (int64_t j = j0; j <= j1; ++j) {
        s[static_cast<size_t>(j - j0)] = dot(qbar.data(), k + j * k_stride, hd) * scale;
        m = std::max(m, s[static_cast<size_t>(j - j0)]);
      }
      double sum = 0.0;
      for (double x : s) sum += std::exp(x - m);
      lse[static_cast<size_t>(t)] = m + std::log(sum);
      mx = std::max(mx, lse[static_cast<size_t>(t)]);
    }
    double total = 0.0;
    for (int t = 0; t <= last; ++t) total += std::exp(lse[static_cast<size_t>(t)] - mx);
    float* row = ps.p.data() + static_cast<size_t>(i) * static_cast<size_t>(ps.n_ktiles);
    for (int t = 0; t <= last; ++t) row[t] = static_cast<float>(std::exp(lse[static_cast<size_t>(t)] - mx) / total);
  }
  return ps;
}

BlockRowLimits block_row_limits(const HeadBudget& b, int64_t row_tiles, int64_t kv_len) {
  BlockRowLimits l;
  l.threshold = std::llrint(b.mass_target * kFixedOne);
  l.max_tiles = static_cast<int64_t>(std::floor(b.max_density * static_cast<double>(row_tiles)));
  if (b.max_keys > 0) l.max_tiles = std::min<int64_t>(l.max_tiles, cap_tiles_per_query(b.max_keys, b.grow_from, kv_len));
  l.min_tiles = static_cast<int64_t>(std::ceil(b.min_density * static_cast<double>(row_tiles)));
  return l;
}

HeadPlan select_block_cluster(const HeadBudget& b, const float* p, int64_t p_stride, int64_t n, int64_t pos0) {
  const int nq = n_qtiles_of(n);
  HeadPlan plan;
  plan.pattern = Pattern::BlockCluster;
  TileList& l = plan.list;
  l.n = n;
  l.pos0 = pos0;
  l.offsets.push_back(0);
  int64_t mass_sum = 0;
  bool all_reached = true;
  std::vector<uint8_t> on;
  std::vector<std::pair<int64_t, int32_t>> cands;
  for (int i = 0; i < nq; ++i) {
    const float* row = p + static_cast<int64_t>(i) * p_stride;
    const int last = last_key_tile(n, pos0, i);
    const int64_t d0 = first_pos(pos0, i) / kKeyTile;
    on.assign(static_cast<size_t>(last) + 1, 0);
    int64_t kept = 0, have = 0;
    cands.clear();
    for (int t = 0; t <= last; ++t) {
      if (t == 0 || t >= d0) {
        on[static_cast<size_t>(t)] = 1;
        kept += to_fixed(row[t]);
        ++have;
      } else {
        cands.emplace_back(to_fixed(row[t]), t);
      }
    }
    // larger mass first at the rank resolution, ties: lower tile
    std::sort(cands.begin(), cands.end(), [](const auto& x, const auto& y) {
      const int64_t rx = x.first >> kBlockRankShift, ry = y.first >> kBlockRankShift;
      return rx != ry ? rx > ry : x.second < y.second;
    });
    const BlockRowLimits lim = block_row_limits(b, last + 1, pos0 + n);
    const int64_t cap = std::max(have, lim.max_tiles);
    for (const auto& [m, t] : cands) {
      if ((kept >= lim.threshold && have >= lim.min_tiles) || have >= cap) break;
      on[static_cast<size_t>(t)] = 1;
      kept += m;
      ++have;
    }
    for (int t = 0; t <= last; ++t)
      if (on[static_cast<size_t>(t)]) l.tiles.push_back(t);
    l.offsets.push_back(static_cast<int32_t>(l.tiles.size()));
    all_reached = all_reached && kept >= lim.threshold;
    mass_sum += kept;
  }
  plan.est_mass = std::min(1.0, static_cast<double>(mass_sum) / (kFixedOne * static_cast<double>(nq)));
  plan.mass_reached = all_reached;
  return plan;
}

const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::Triangular: return "triangular";
    case Pattern::IntervalSlash: return "interval-slash";
    case Pattern::BlockCluster: return "block-cluster";
  }
  return "?";
}

Pattern pattern_from_name(const std::string& name) {
  if (name == "triangular") return Pattern::Triangular;
  if (name == "interval-slash") return Pattern::IntervalSlash;
  if (name == "block-cluster") return Pattern::BlockCluster;
  throw Error(ErrorCode::BadConfig, "unknown sparse pattern \"" + name +
                                        "\"; expected triangular, interval-slash or block-cluster");
}

const char* attention_mode_name(AttentionMode m) {
  switch (m) {
    case AttentionMode::Auto: return "auto";
    case AttentionMode::Dense: return "dense";
    case AttentionMode::Sparse: return "sparse";
  }
  return "?";
}

AttentionMode attention_mode_from_name(const std::string& name) {
  if (name == "auto") return AttentionMode::Auto;
  if (name == "dense") return AttentionMode::Dense;
  if (name == "sparse") return AttentionMode::Sparse;
  throw Error(ErrorCode::BadArgument, "--attention takes auto, dense or sparse, not \"" + name + "\"");
}

const HeadBudget& SparseConfig::head(int layer, int h) const {
  if (layer >= 0 && static_cast<size_t>(layer) < layers.size() && h >= 0 &&
      static_cast<size_t>(h) < layers[static_cast<size_t>(layer)].size())
    return layers[static_cast<size_t>(layer)][static_cast<size_t>(h)];
  return default_head;
}

namespace {

HeadBudget budget_from_json(const nlohmann::json& j, const HeadBudget& base, const std::string& source) {
  HeadBudget b = base;
  if (!j.is_object()) throw Error(ErrorCode::BadConfig, source + ": each head must be an object");
  if (j.contains("pattern")) {
    try {
      b.pattern = pattern_from_name(j.at("pattern").get<std::string>());
    } catch (const Error& e) {
      throw Error(ErrorCode::BadConfig, source + ": " + e.what());
    }
  }
  if (j.contains("mass")) b.mass_target = j.at("mass").get<double>();
  if (j.contains("min_density")) b.min_density = j.at("min_density").get<double>();
  if (j.contains("max_density")) b.max_density = j.at("max_density").get<double>();
  if (j.contains("sink_tiles")) b.sink_tiles = j.at("sink_tiles").get<int>();
  if (j.contains("window_tiles")) b.window_tiles = j.at("window_tiles").get<int>();
  if (j.contains("max_keys")) b.max_keys = j.at("max_keys").get<int64_t>();
  if (j.contains("grow_from")) b.grow_from = j.at("grow_from").get<int64_t>();
  if (!(b.mass_target > 0.0 && b.mass_target <= 1.0) || b.min_density < 0.0 || b.max_density <= 0.0 ||
      b.max_density > 1.0 || b.min_density > b.max_density || b.sink_tiles < 1 || b.window_tiles < 0 ||
      b.max_keys < 0 || b.max_keys > kMaxBudgetKeys || b.grow_from < 0 || b.grow_from > kMaxBudgetKeys)
    throw Error(ErrorCode::BadConfig,
                source + ": a head budget is out of range (mass in (0, 1], 0 <= min_density <= max_density <= 1, "
                         "sink_tiles >= 1, window_tiles >= 0, max_keys and grow_from in 0.." +
                    std::to_string(kMaxBudgetKeys) + ")");
  return b;
}

nlohmann::json budget_to_json(const HeadBudget& b) {
  return {{"pattern", pattern_name(b.pattern)}, {"mass", b.mass_target},       {"min_density", b.min_density},
          {"max_density", b.max_density},       {"sink_tiles", b.sink_tiles}, {"window_tiles", b.window_tiles},
          {"max_keys", b.max_keys},         {"grow_from", b.grow_from}};
}

}  // namespace

int64_t crossover_from_points(std::vector<CrossoverPoint> points) {
  std::sort(points.begin(), points.end(),
            [](const CrossoverPoint& a, const CrossoverPoint& b) { return a.tokens < b.tokens; });
  int64_t from = 0;
  for (auto it = points.rbegin(); it != points.rend() && it->sparse_ms < it->dense_ms; ++it) from = it->tokens;
  return from;
}

const MeasuredCrossover* SparseConfig::measured_crossover(const std::string& backend) const {
  for (const MeasuredCrossover& m : measured)
    if (m.backend == backend) return &m;
  return nullptr;
}

void SparseConfig::set_measured_crossover(MeasuredCrossover m) {
  for (MeasuredCrossover& e : measured)
    if (e.backend == m.backend) {
      e = std::move(m);
      return;
    }
  measured.push_back(std::move(m));
}

SparseConfig SparseConfig::from_json(const std::string& text, const std::string& source) {
  SparseConfig c;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object()) throw Error(ErrorCode::BadConfig, source + " is not a JSON object (a sparse-attention config)");
    c.model = j.value("model", std::string());
    c.crossover_tokens = j.value("crossover_tokens", c.crossover_tokens);
    c.last_queries = j.value("last_queries", c.last_queries);
    if (c.crossover_tokens < 0 || c.last_queries < 1 || c.last_queries > 4096)
      throw Error(ErrorCode::BadConfig, source + ": crossover_tokens must be >= 0 and last_queries in 1..4096");
    if (j.contains("default")) c.default_head = budget_from_json(j.at("default"), c.default_head, source);
    if (j.contains("layers")) {
      for (const auto& layer : j.at("layers")) {
        std::vector<HeadBudget> heads;
        for (const auto& h : layer) heads.push_back(budget_from_json(h, c.default_head, source));
        c.layers.push_back(std::move(heads));
      }
    }
    if (j.contains("measured")) {
      for (const auto& m : j.at("measured")) {
        MeasuredCrossover x;
        x.backend = m.at("backend").get<std::string>();
        x.tokens = m.at("tokens").get<int64_t>();
        x.up_to = m.value("up_to", int64_t{0});
        x.device = m.value("device", std::string());
        x.date = m.value("date", std::string());
        if (m.contains("points"))
          for (const auto& p : m.at("points"))
            x.points.push_back({p.at("tokens").get<int64_t>(), p.at("dense_ms").get<double>(),
                                p.at("sparse_ms").get<double>()});
        if ((x.backend != "cpu" && x.backend != "cuda") || x.tokens < 0 || x.up_to < 0)
          throw Error(ErrorCode::BadConfig, source + ": a measured crossover needs backend \"cpu\" or \"cuda\" and "
                                                     "tokens >= 0");
        c.set_measured_crossover(std::move(x));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::BadConfig, source + " is not a valid sparse-attention config: " + e.what());
  }
  return c;
}

std::string SparseConfig::to_json() const {
  nlohmann::json j;
  j["model"] = model;
  j["crossover_tokens"] = crossover_tokens;
  j["last_queries"] = last_queries;
  j["default"] = budget_to_json(default_head);
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& layer : layers) {
    nlohmann::json hs = nlohmann::json::array();
    for (const auto& h : layer) hs.push_back(budget_to_json(h));
    ls.push_back(hs);
  }
  j["layers"] = ls;
  if (!measured.empty()) {
    nlohmann::json ms = nlohmann::json::array();
    for (const MeasuredCrossover& m : measured) {
      nlohmann::json ps = nlohmann::json::array();
      for (const CrossoverPoint& p : m.points)
        ps.push_back({{"tokens", p.tokens}, {"dense_ms", p.dense_ms}, {"sparse_ms", p.sparse_ms}});
      ms.push_back({{"backend", m.backend}, {"tokens", m.tokens}, {"up_to", m.up_to}, {"device", m.device},
                    {"date", m.date}, {"points", ps}});
    }
    j["measured"] = ms;
  }
  return j.dump(1);
}

double TileList::density() const {
  const int64_t c = causal_tiles(n, pos0);
  return c > 0 ? static_cast<double>(computed()) / static_cast<double>(c) : 0.0;
}

int32_t last_key_tile(int64_t n, int64_t pos0, int qtile) {
  return static_cast<int32_t>(last_pos(n, pos0, qtile) / kKeyTile);
}

int64_t causal_tiles(int64_t n, int64_t pos0) {
  int64_t c = 0;
  for (int i = 0; i < n_qtiles_of(n); ++i) c += last_key_tile(n, pos0, i) + 1;
  return c;
}

TileList all_causal_tiles(int64_t n, int64_t pos0) {
  TileList l;
  l.n = n;
  l.pos0 = pos0;
  l.offsets.push_back(0);
  for (int i = 0; i < n_qtiles_of(n); ++i) {
    for (int32_t t = 0; t <= last_key_tile(n, pos0, i); ++t) l.tiles.push_back(t);
    l.offsets.push_back(static_cast<int32_t>(l.tiles.size()));
  }
  return l;
}

TileList interval_slash_tiles(int64_t n, int64_t pos0, const std::vector<int32_t>& vertical_tiles,
                              const std::vector<int32_t>& slash_bands) {
  TileSet set(n, pos0);
  mark_mandatory(set, n, pos0);
  for (int32_t t : vertical_tiles) mark_vertical(set, t, false);
  for (int32_t b : slash_bands) mark_band(set, n, pos0, b, false);
  return set.list();
}

HeadPlan estimate_head(const HeadBudget& budget, int last_queries, const float* q, int64_t q_stride, int64_t n,
                       int64_t pos0, const float* k, int64_t k_stride, int head_dim) {
  if (n <= 0) throw Error(ErrorCode::BadArgument, "sparse estimation needs at least one query");
  switch (budget.pattern) {
    case Pattern::BlockCluster: {
      const PooledScores ps = pooled_scores(q, q_stride, n, pos0, k, k_stride, head_dim);
      return select_block_cluster(budget, ps.p.data(), ps.n_ktiles, n, pos0);
    }
    case Pattern::Triangular:
    case Pattern::IntervalSlash:
    default: {
      const SampleSums s = sample_sums(last_queries, q, q_stride, n, pos0, k, k_stride, head_dim);
      return select_from_sums(budget, s.col.data(), s.diag.data(), s.rows, n, pos0);
    }
  }
}

void tile_attention(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, const float* v,
                    int64_t kv_stride, int head_dim, const TileList& list, float* out, int64_t out_stride) {
  if (list.n != n || list.pos0 != pos0 || list.n_qtiles() != n_qtiles_of(n))
    throw Error(ErrorCode::BadArgument, "tile list does not match the chunk");
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::vector<float> scores;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t p = pos0 + r;
    const int i = static_cast<int>(r / kQueryTile);
    ranges.clear();
    for (int32_t idx = list.offsets[static_cast<size_t>(i)]; idx < list.offsets[static_cast<size_t>(i) + 1]; ++idx) {
      const int64_t a = static_cast<int64_t>(list.tiles[static_cast<size_t>(idx)]) * kKeyTile;
      const int64_t b = std::min<int64_t>(a + kKeyTile - 1, p);
      if (a > b) continue;
      if (!ranges.empty() && ranges.back().second + 1 == a) ranges.back().second = b;  // contiguous: one range
      else ranges.emplace_back(a, b);
    }
    row_attention(q + r * q_stride, k, v, kv_stride, head_dim, ranges, scores, out + r * out_stride);
  }
}

void dense_attention(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, const float* v,
                     int64_t kv_stride, int head_dim, float* out, int64_t out_stride) {
  std::vector<std::pair<int64_t, int64_t>> ranges(1);
  std::vector<float> scores;
  for (int64_t r = 0; r < n; ++r) {
    ranges[0] = {0, pos0 + r};
    row_attention(q + r * q_stride, k, v, kv_stride, head_dim, ranges, scores, out + r * out_stride);
  }
}

double exact_mass(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, int64_t k_stride,
                  int head_dim, const TileList& list, int64_t row_step) {
  std::vector<float> A(static_cast<size_t>(pos0 + n));
  double total = 0.0;
  int64_t rows = 0;
  row_step = std::max<int64_t>(row_step, 1);
  for (int64_t r = 0; r < n; r = (r + row_step < n || r == n - 1) ? r + row_step : n - 1) {
    ++rows;
    const int64_t p = pos0 + r;
    softmax_row(q + r * q_stride, k, k_stride, p, head_dim, A.data());
    const int i = static_cast<int>(r / kQueryTile);
    for (int32_t idx = list.offsets[static_cast<size_t>(i)]; idx < list.offsets[static_cast<size_t>(i) + 1]; ++idx) {
      const int64_t a = static_cast<int64_t>(list.tiles[static_cast<size_t>(idx)]) * kKeyTile;
      for (int64_t j = a; j < std::min<int64_t>(a + kKeyTile, p + 1); ++j) total += A[static_cast<size_t>(j)];
    }
    if (r == n - 1) break;
  }
  return total / static_cast<double>(rows);
}

}  // namespace folio::sparse
