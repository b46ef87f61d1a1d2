// Sparse prefill (the SparseAccelerate idea): for each attention head and prefill chunk, choose
// from the input itself which key tiles each query tile attends to. Three pattern kinds:
//   Triangular     sink tiles + a local window of tiles before the diagonal; the chunk's last
//                  query tile is dense.
//   IntervalSlash  vertical key columns and diagonal bands chosen from the attention of the
//                  chunk's last queries to every key before them (column sums -> verticals,
//                  diagonal sums -> slashes), mapped to key tiles per query tile.
//   BlockCluster   key tiles per query tile chosen from the query tile's mean query against every
//                  key (pooled per key tile by log-sum-exp, so one strong key counts fully).
// Budgets are counted in the tiles the kernel computes (128 queries x 64 keys, the CUDA kernel's
// tiles): per head and input the smallest set that keeps `mass_target` of the estimated attention
// mass, within [min_density, max_density] of the causal tiles. The first key tile and the
// diagonal tiles are always kept. This file is the CPU reference: estimation, tile lists and
// block-sparse attention; kernels/ runs the same lists on the GPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace folio::sparse {

constexpr int kQueryTile = 128;  // = cuda::kQueryTile
constexpr int kKeyTile = 64;     // = cuda::kKeyTile
constexpr int64_t kMaxBudgetKeys = int64_t{1} << 30;  // max_keys and grow_from (the GPU keeps grow_from in 32 bits)

enum class Pattern { Triangular, IntervalSlash, BlockCluster };
const char* pattern_name(Pattern p);
Pattern pattern_from_name(const std::string& name);  // throws Error(BadConfig)

struct HeadBudget {
  Pattern pattern = Pattern::IntervalSlash;
  double mass_target = 0.95;  // share of the estimated attention mass to keep
  double min_density = 0.0;   // of the chunk's causal tiles
  double max_density = 0.35;
  int sink_tiles = 1;         // Triangular: leading key tiles
  int window_tiles = 8;       // Triangular: key tiles before the diagonal ones
  // At most this many keys per query on average (0 = no cap): the budget stops growing with the
  // document, so sparse attention's cost per token stays flat at long contexts.
  int64_t max_keys = 8192;
  // From this many keys on (0 = never) the cap grows with the square root of the keys: a chunk
  // with 4x grow_from keys may keep 2x max_keys. Density still falls with length (as 1/sqrt),
  // but a head whose mass is spread keeps more of it at 128K than a flat cap allows.
  int64_t grow_from = 0;
};

#if defined(__CUDACC__)
#define FOLIO_HOST_DEVICE __host__ __device__
#else
#define FOLIO_HOST_DEVICE
#endif

// Key tiles per query tile a budget allows in a chunk whose keys end at kv_len (0 = no cap):
// floor(max_keys / 64 x sqrt(kv_len / grow_from)) past grow_from, else max_keys / 64 (at least 1).
// The CPU reference and the GPU selection both call this; each step is one correctly rounded
// IEEE operation (no sum that could be contracted), so both sides get the same integer.
FOLIO_HOST_DEVICE inline int64_t cap_tiles_per_query(int64_t max_keys, int64_t grow_from, int64_t kv_len) {
  if (max_keys <= 0) return 0;
  const int64_t base = max_keys / kKeyTile > 1 ? max_keys / kKeyTile : 1;
  if (grow_from <= 0 || kv_len <= grow_from) return base;
  return static_cast<int64_t>(
      floor(static_cast<double>(base) * sqrt(static_cast<double>(kv_len) / static_cast<double>(grow_from))));
}

enum class AttentionMode { Auto, Dense, Sparse };
const char* attention_mode_name(AttentionMode m);
AttentionMode attention_mode_from_name(const std::string& name);  // throws Error(BadArgument)

// One length of a crossover measurement: a prefill of that many tokens, dense and sparse.
struct CrossoverPoint {
  int64_t tokens = 0;
  double dense_ms = 0.0, sparse_ms = 0.0;
};
// Where auto attention starts to pay on one backend (folio-sparse crossover): the model's prefill
// timed dense and sparse at doubling lengths on that backend and device.
struct MeasuredCrossover {
  std::string backend;  // "cpu" or "cuda" (backend_key)
  int64_t tokens = 0;   // sparse was faster from here on, at every longer length measured (0: at none)
  int64_t up_to = 0;    // the longest length measured
  std::string device;   // what it ran on, in words
  std::string date;     // YYYY-MM-DD
  std::vector<CrossoverPoint> points;
};
// The crossover of a measurement: the shortest length from which sparse is faster at that and
// every longer length (0 if it is not faster at the longest). Points in any order.
int64_t crossover_from_points(std::vector<CrossoverPoint> points);

// Per model: each head's pattern and budget (from the offline search), the crossover length from
// which auto mode uses sparse attention, and the estimation's sample size.
struct SparseConfig {
  std::string model;                         // what it was searched on ("" = default)
  int64_t crossover_tokens = 16384;          // auto: sparse for chunks whose keys reach this many
  int last_queries = 32;                     // IntervalSlash: sample rows (docs/sparse.md: why 32)
  HeadBudget default_head;                   // heads without an entry
  std::vector<std::vector<HeadBudget>> layers;  // [layer][head]; may be empty
  // Measured crossovers, one per backend at most; where one exists for the backend in use, auto
  // attention follows it instead of crossover_tokens.
  std::vector<MeasuredCrossover> measured;

  const HeadBudget& head(int layer, int head) const;
  const MeasuredCrossover* measured_crossover(const std::string& backend) const;  // null if none
  void set_measured_crossover(MeasuredCrossover m);  // replaces the backend's entry
  static SparseConfig from_json(const std::string& text, const std::string& source);  // throws Error(BadConfig)
  std::string to_json() const;
};

// Key tiles per query tile of one chunk (queries at positions pos0 .. pos0 + n - 1, keys 0 ..
// pos0 + n - 1): tiles[offsets[i] .. offsets[i + 1]) ascending and unique for query tile i.
struct TileList {
  int64_t n = 0, pos0 = 0;
  std::vector<int32_t> offsets;
  std::vector<int32_t> tiles;

  int n_qtiles() const { return static_cast<int>(offsets.empty() ? 0 : offsets.size() - 1); }
  int64_t computed() const { return static_cast<int64_t>(tiles.size()); }
  double density() const;  // computed / causal tiles
};

int64_t causal_tiles(int64_t n, int64_t pos0);
TileList all_causal_tiles(int64_t n, int64_t pos0);
// Key tiles [first, last] a query tile may see (causal).
int32_t last_key_tile(int64_t n, int64_t pos0, int qtile);

// What estimation chose for one head and chunk.
struct HeadPlan {
  Pattern pattern = Pattern::IntervalSlash;
  TileList list;
  double est_mass = 0.0;     // estimated share of attention mass the list keeps
  bool mass_reached = false;  // est_mass >= the target within the budget
  // IntervalSlash: the selected vertical key tiles and diagonal bands (offsets [64 b, 64 b + 63])
  std::vector<int32_t> vertical_tiles;
  std::vector<int32_t> slash_bands;
};

// Estimates one head's pattern. q: the chunk's queries [n][q_stride] (head's hd values at the
// start of each row); k: keys [pos0 + n][k_stride]. Values as the model computes them (after RoPE).
HeadPlan estimate_head(const HeadBudget& budget, int last_queries, const float* q, int64_t q_stride, int64_t n,
                       int64_t pos0, const float* k, int64_t k_stride, int head_dim);

// Interval-Slash and Triangular estimation run in two steps, on the CPU here and on the GPU in
// kernels/sparse_estimate.cu (which must give the same plan from the same sums):
// 1. Sample sums: the chunk's last `rows` queries attend to every key before them (exact softmax);
//    col[j] sums their attention to key j, diag[d] their attention at distance d = p - j.
struct SampleSums {
  int64_t rows = 0;
  std::vector<float> col, diag;  // pos0 + n entries each
};
SampleSums sample_sums(int last_queries, const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k,
                       int64_t k_stride, int head_dim);

// 2. Selection. Units are key tiles (verticals, scored by their strongest key's column sum) and
//    64-wide distance bands (slashes, scored by their strongest distance's diagonal sum). The mass
//    a set of Interval-Slash units keeps is the sample's mass in the key tiles they list for the
//    last query tile (where the sample rows are), each tile counted once; a Triangular set keeps
//    its units' own masses (sinks' columns, the window's distances). Sums are in fixed point, so
//    any summation order gives the same bits. Interval-Slash takes tile 0 and band 0, then the other units strongest first
//    (ties: lower unit id); Triangular takes the sink tiles and the first window_tiles bands, then
//    further bands in order (the window grows), and its last query tile is dense. A prefix of k
//    units lists every tile (query tile i, key tile t) whose smallest covering rank is below k; the
//    plan is the shortest prefix whose summed mass reaches the target and whose tiles reach the
//    minimum, cut back to the longest prefix within the maximum.
HeadPlan select_from_sums(const HeadBudget& budget, const float* col, const float* diag, int64_t rows, int64_t n,
                          int64_t pos0);

// Pieces of the selection the GPU shares (bit-exact on both sides).
constexpr double kFixedOne = 4294967296.0;  // 2^32: mass in fixed point
constexpr int32_t kNoRank = 0x7fffffff;
int64_t to_fixed(float v);
struct Limits {
  int64_t threshold = 0;  // mass target x rows in fixed point
  int64_t min_tiles = 0, max_tiles = 0;  // max: max_density of the causal tiles, capped by max_keys
};
Limits limits(const HeadBudget& budget, int64_t rows, int64_t causal, int64_t n_qtiles, int64_t kv_len);
// The smallest rank of a unit covering tile (i, t): -1 for tiles always listed (tile 0, the
// diagonal tiles, a Triangular head's last query tile), kNoRank if no unit covers it.
// vrank[u] / brank[b]: the rank of vertical u / band b in the order (kNoRank if not a candidate).
int32_t cell_rank(const int32_t* vrank, const int32_t* brank, int64_t nk, int64_t n, int64_t pos0, int i, int64_t t,
                  bool last_tile_dense);

// Block-Cluster estimation, in two steps like Interval-Slash (the GPU gives the same plan from the
// same scores):
// 1. Pooled scores: each query tile's mean query qbar_i against every key its last query may see;
//    per key tile the log-sum-exp of its keys' scores, normalised over the row, so
//    p[i][t] = sum_{j in t, j <= p1(i)} exp(s_ij) / sum_{j <= p1(i)} exp(s_ij), s_ij = qbar_i.k_j / sqrt(hd):
//    the mean query's exact attention mass per key tile. A single strong key (a needle in a flat
//    block) counts as much as it would in attention; a mean-pooled key would hide it.
struct PooledScores {
  int64_t n_ktiles = 0;
  std::vector<float> p;  // [n_qtiles][n_ktiles]; 0 past the row's last key tile
};
PooledScores pooled_scores(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, int64_t k_stride,
                           int head_dim);
// 2. Selection per query tile: the first key tile and the diagonal tiles, then the others by mass
//    (ranked at 2^-19, fixed point >> kBlockRankShift, so that rank and tile fit a 32-bit sort key
//    on the GPU; larger first, ties: lower tile; masses summed in full fixed point) until the kept mass reaches the target with at
//    least min_density of the row's causal tiles, or the row holds max_density of them (at most
//    max_keys keys, grown past grow_from as cap_tiles_per_query says). est_mass: the rows' mean kept mass; mass_reached: every row reached it.
constexpr int kBlockRankShift = 13;
struct BlockRowLimits {
  int64_t threshold = 0;  // mass target in fixed point
  int64_t min_tiles = 0, max_tiles = 0;
};
BlockRowLimits block_row_limits(const HeadBudget& budget, int64_t row_tiles, int64_t kv_len);
HeadPlan select_block_cluster(const HeadBudget& budget, const float* p, int64_t p_stride, int64_t n, int64_t pos0);

// The tiles an IntervalSlash selection covers: tile (i, t) is listed iff some query p of tile i
// and key j <= p of tile t have j in a vertical tile or p - j in a slash band (or t = 0, or t is
// one of the diagonal tiles).
TileList interval_slash_tiles(int64_t n, int64_t pos0, const std::vector<int32_t>& vertical_tiles,
                              const std::vector<int32_t>& slash_bands);

// Block-sparse attention over a tile list for one head (causal within listed tiles), fp32:
// q [n][q_stride], k and v [pos0 + n][kv_stride], out [n][out_stride]. Keys are visited in
// ascending order, so with every causal tile listed the result equals dense_attention() exactly.
void tile_attention(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, const float* v,
                    int64_t kv_stride, int head_dim, const TileList& list, float* out, int64_t out_stride);
void dense_attention(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, const float* v,
                     int64_t kv_stride, int head_dim, float* out, int64_t out_stride);

// The exact share of attention mass a tile list keeps, averaged over the chunk's rows.
// With row_step > 1 only every row_step-th row (and the last) is counted.
double exact_mass(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k, int64_t k_stride,
                  int head_dim, const TileList& list, int64_t row_step = 1);

}  // namespace folio::sparse
