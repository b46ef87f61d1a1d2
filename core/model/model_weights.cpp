#include "core/model/model_weights.h"


namespace folio {

size_t LoadedModel::weight_bytes() const {
  size_t total = weights.tok_embd.bytes() + weights.out_norm.bytes();
  if (weights.output.data != weights.tok_embd.data) total += weights.output.bytes();
  for (const auto& l : weights.layers) {
    for (const TensorView* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.ffn_norm,
                                &l.w_gate, &l.w_up, &l.w_down})
      total += t->bytes();
  }
  return total;
}

TensorView LoadedModel::own_f32(std::vector<float> values, int64_t rows, int64_t cols) {
  owned_.push_back(std::make_unique<std::vector<float>>(std::move(values)));
  TensorView v;
  v.dtype = DType::F32;
  v.rows = rows;
  v.cols = cols;
  v.data = owned_.back()->data();
  return v;
}

TensorView LoadedModel::own_bytes(DType dtype, int64_t rows, int64_t cols, std::vector<uint8_t> bytes) {
  owned_bytes_.push_back(std::make_unique<std::vector<uint8_t>>(std::move(bytes)));
  TensorView v;
  v.dtype = dtype;
  v.rows = rows;
  v.cols = cols;
  v.data = owned_bytes_.back()->data();
  return v;
}

}  // namespace folio
