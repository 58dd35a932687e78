"""The models of :mod:`pyfastdl.bench_models` written with PyTorch, layer for layer, for the
end-to-end comparison: each builder takes the recipe's arguments (the same ones pyfastdl's model is
built from) and returns a ``torch.nn.Module`` with the same parameter count (the benchmark asserts
it) and the same computation. Only imported when torch is installed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def lenet(args, num_classes):
    act = nn.ReLU()
    return nn.Sequential(nn.Conv2d(1, 6, 5), act, nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), act, nn.MaxPool2d(2),
                         nn.Conv2d(16, 120, 5), act, nn.Flatten(), nn.Linear(120, 84), act,
                         nn.Linear(84, num_classes))


def nin(args, num_classes):
    from .models.nin import PAPER_BLOCKS

    bn, layers, c = args.norm == "batch", [], 3
    for i, (k, widths) in enumerate(PAPER_BLOCKS):
        widths = [num_classes if w is None else max(1, round(w * args.width_mult)) for w in widths]
        last_block = i == len(PAPER_BLOCKS) - 1
        for j, (w, kk) in enumerate(zip(widths, (k, 1, 1))):
            layers.append(nn.Conv2d(c, w, kk, padding=kk // 2, bias=not bn))
            if not (last_block and j == 2):
                layers += [nn.BatchNorm2d(w)] if bn else []
                layers.append(nn.ReLU())
            c = w
        if not last_block:
            layers += [nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(args.dropout)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut, self.stride, self.extra = None, stride, planes - inplanes
        if (stride != 1 or inplanes != planes) and shortcut == "B":
            self.shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        if self.shortcut is not None:
            identity = self.shortcut(x)
        elif self.stride != 1 or self.extra:  # option A: subsample and zero-pad the channels
            identity = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))
        else:
            identity = x
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


def _stage(inplanes, planes, blocks, stride, shortcut):
    return [BasicBlock(inplanes, planes, stride, shortcut)] + [BasicBlock(planes, planes, 1, shortcut)
                                                               for _ in range(blocks - 1)]


def resnet20(args, num_classes):
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    for inplanes, planes, stride in ((16, 16, 1), (16, 32, 2), (32, 64, 2)):
        layers += _stage(inplanes, planes, 3, stride, args.shortcut)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def resnet18(args, num_classes):
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    for inplanes, planes, stride in ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)):
        layers += _stage(inplanes, planes, 2, stride, "B")
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


class FCN8s(nn.Module):
    """VGG-16 backbone (width-scaled, batch norm), fc6/fc7 as convolutions, score layers and the
    three transposed-convolution upsamplings, cropped as pyfastdl's FCN (VGG offsets f // 2)."""

    def __init__(self, args, num_classes):
        super().__init__()
        from .models.fcn import VGG16_STAGES

        stages, c, bn = [], 3, args.norm == "batch"
        for planes, n in VGG16_STAGES:
            planes, layers = max(1, round(planes * args.width_mult)), []
            for _ in range(n):
                layers += [nn.Conv2d(c, planes, 3, padding=1, bias=not bn)] + ([nn.BatchNorm2d(planes)] if bn else [])
                layers.append(nn.ReLU())
                c = planes
            stages.append(nn.Sequential(*layers, nn.MaxPool2d(2, 2, ceil_mode=True)))
        self.stages = nn.ModuleList(stages)
        fc = args.hidden
        self.fc = nn.Sequential(nn.Conv2d(c, fc, 7, padding=3), nn.ReLU(), nn.Dropout(args.dropout),
                                nn.Conv2d(fc, fc, 1), nn.ReLU(), nn.Dropout(args.dropout))
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(round(512 * args.width_mult), num_classes, 1)
        self.score_pool3 = nn.Conv2d(round(256 * args.width_mult), num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, bias=False)
        self.upscore8.weight.requires_grad_(False)

    def forward(self, x):
        h, w = x.shape[2:]
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        pool3, pool4 = feats[2], feats[3]
        score = self.score_fr(self.fc(x))
        up = self.upscore2(score)[:, :, 1:1 + pool4.shape[2], 1:1 + pool4.shape[3]]
        score = up + self.score_pool4(pool4)
        up = self.upscore_pool4(score)[:, :, 1:1 + pool3.shape[2], 1:1 + pool3.shape[3]]
        score = up + self.score_pool3(pool3)
        return self.upscore8(score)[:, :, 4:4 + h, 4:4 + w]


class YOLOv1(nn.Module):
    """The CPU-sized YOLOv1 (``yolo_v1_small``): convolutional trunk, fully connected head."""

    def __init__(self, args, num_classes):
        super().__init__()
        from .models.yolo import SMALL_LAYERS

        trunk, c, size = [], 3, args.image_size
        for layer in SMALL_LAYERS:
            if layer == "M":
                trunk.append(nn.MaxPool2d(2))
                size //= 2
                continue
            out, k, stride = layer
            trunk += [nn.Conv2d(c, out, k, stride, k // 2, bias=args.norm != "batch")]
            trunk += ([nn.BatchNorm2d(out)] if args.norm == "batch" else []) + [nn.LeakyReLU(0.1)]
            c, size = out, (size + 2 * (k // 2) - k) // stride + 1
        self.S, self.depth = args.grid, args.boxes * 5 + num_classes
        hidden = args.hidden or 1024
        self.features = nn.Sequential(*trunk)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, hidden), nn.LeakyReLU(0.1),
                                  nn.Dropout(args.dropout), nn.Linear(hidden, self.S * self.S * self.depth))

    def forward(self, x):
        return self.head(self.features(x)).reshape(x.shape[0], self.S, self.S, self.depth)


def yolo_v1_loss(pred, target, S, B, C, lambda_coord=5.0, lambda_noobj=0.5):
    """pyfastdl.vision.yolo.yolo_v1_loss on torch tensors (the same numpy bookkeeping)."""
    from .vision.yolo import _corners, _iou_corners

    t = np.asarray(target, dtype=np.float64)
    p = pred.detach().numpy().astype(np.float64)
    obj = t[..., 4]
    gt = _corners(t[..., :4], S)
    ious = np.stack([_iou_corners(_corners(p[..., 5 * b:5 * b + 4], S), gt) for b in range(B)], -1)
    resp = np.zeros(ious.shape)
    np.put_along_axis(resp, ious.argmax(-1)[..., None], 1.0, axis=-1)
    resp *= obj[..., None]
    conf_target = resp * ious

    def const(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    def signed_sqrt(x, values):
        sign = const(np.where(values < 0, -1.0, 1.0))
        return sign * (x * sign + 1e-9).sqrt()

    loss = 0
    for b in range(B):
        box, r = pred[..., 5 * b:5 * b + 5], const(resp[..., b])
        coord = (box[..., 0] - const(t[..., 0])) ** 2 + (box[..., 1] - const(t[..., 1])) ** 2
        size = ((signed_sqrt(box[..., 2], p[..., 5 * b + 2]) - const(np.sqrt(t[..., 2]))) ** 2
                + (signed_sqrt(box[..., 3], p[..., 5 * b + 3]) - const(np.sqrt(t[..., 3]))) ** 2)
        conf_err = (box[..., 4] - const(conf_target[..., b])) ** 2
        loss = loss + (lambda_coord * (r * (coord + size)) + r * conf_err
                       + lambda_noobj * (const(1 - resp[..., b]) * conf_err)).sum()
    loss = loss + (const(obj) * ((pred[..., B * 5:] - const(t[..., 5:])) ** 2).sum(-1)).sum()
    return loss / pred.shape[0]


class CharLSTM(nn.Module):
    def __init__(self, args, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, args.embed_dim)
        self.lstm = nn.LSTM(args.embed_dim, args.hidden, args.layers, batch_first=True, dropout=args.dropout)
        self.drop = nn.Dropout(args.dropout)
        self.head = nn.Linear(args.hidden, vocab)

    def forward(self, ids):
        return self.head(self.drop(self.lstm(self.embed(ids))[0]))


def _packed(lstm, x, lengths, hx=None):
    """Run ``lstm`` over padded batch-first ``x`` with per-sequence ``lengths`` (as pyfastdl's
    ``lengths=``): outputs padded back to x's length, final states at each sequence's end."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = lstm(packed, hx)
    return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], state


class Seq2Seq(nn.Module):
    def __init__(self, args, src_vocab, tgt_vocab):
        super().__init__()
        e, h = args.embed_dim, args.hidden
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, e, padding_idx=0), nn.Embedding(tgt_vocab, e,
                                                                                                  padding_idx=0)
        self.encoder = nn.LSTM(e, h, args.layers, batch_first=True, dropout=args.dropout)
        self.decoder = nn.LSTM(e, h, args.layers, batch_first=True, dropout=args.dropout)
        self.dropout = nn.Dropout(args.dropout)
        self.output = nn.Linear(h, tgt_vocab)

    def forward(self, src, src_lengths, tgt_in):
        pos = torch.arange(src.shape[1]).unsqueeze(0)
        last = src_lengths.unsqueeze(1) - 1
        src = src[torch.arange(src.shape[0]).unsqueeze(1), torch.where(pos < last, last - 1 - pos, pos)]
        _, state = _packed(self.encoder, self.dropout(self.src_embed(src)), src_lengths)
        out, _ = self.decoder(self.dropout(self.tgt_embed(tgt_in)), state)
        return self.output(self.dropout(out))


class Bahdanau(nn.Module):
    def __init__(self, args, src_vocab, tgt_vocab):
        super().__init__()
        e, h, a = args.embed_dim, args.hidden, args.attention_dim
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, e, padding_idx=0), nn.Embedding(tgt_vocab, e,
                                                                                                  padding_idx=0)
        self.encoder = nn.LSTM(e, h, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(h, h)
        self.att_query, self.att_key = nn.Linear(h, a, bias=False), nn.Linear(2 * h, a)
        self.att_score = nn.Linear(a, 1, bias=False)
        self.cell = nn.LSTMCell(e + 2 * h, h)
        self.deep_output = nn.Linear(h + 2 * h + e, h)
        self.dropout = nn.Dropout(args.dropout)
        self.output = nn.Linear(h, tgt_vocab)

    def forward(self, src, src_lengths, tgt_in):
        annotations, (h_n, _) = _packed(self.encoder, self.dropout(self.src_embed(src)), src_lengths)
        h = torch.tanh(self.init_state(h_n[1]))
        c = torch.zeros_like(h)
        keys = self.att_key(annotations)
        mask = torch.arange(src.shape[1]).unsqueeze(0) >= src_lengths.unsqueeze(1)
        embedded = self.dropout(self.tgt_embed(tgt_in))
        states, contexts = [], []
        for i in range(tgt_in.shape[1]):
            energy = self.att_score(torch.tanh(keys + self.att_query(h).unsqueeze(1))).squeeze(-1)
            weights = F.softmax(energy.masked_fill(mask, float("-inf")), dim=-1)
            context = (weights.unsqueeze(1) @ annotations).squeeze(1)
            h, c = self.cell(torch.cat([embedded[:, i], context], dim=1), (h, c))
            states.append(h)
            contexts.append(context)
        s, ctx = torch.stack(states, 1), torch.stack(contexts, 1)
        return self.output(self.dropout(torch.tanh(self.deep_output(torch.cat([s, ctx, embedded], 2)))))


class ConvS2S(nn.Module):
    def __init__(self, args, src_vocab, tgt_vocab, max_positions=1024):
        super().__init__()
        e, h, k, n = args.embed_dim, args.hidden, args.kernel_size, args.layers
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, e, padding_idx=0), nn.Embedding(tgt_vocab, e,
                                                                                                  padding_idx=0)
        self.src_pos, self.tgt_pos = nn.Embedding(max_positions, e), nn.Embedding(max_positions, e)
        for emb in (self.src_embed, self.tgt_embed, self.src_pos, self.tgt_pos):  # N(0, 0.1) as pyfastdl's
            nn.init.normal_(emb.weight, std=0.1)
        self.dropout, self.k = nn.Dropout(args.dropout), k
        self.enc_in, self.enc_out = nn.Linear(e, h), nn.Linear(h, e)
        self.enc_convs = nn.ModuleList([nn.Conv1d(h, 2 * h, k, padding=k // 2) for _ in range(n)])
        self.dec_in, self.dec_out = nn.Linear(e, h), nn.Linear(h, e)
        self.dec_convs = nn.ModuleList([nn.Conv1d(h, 2 * h, k) for _ in range(n)])
        self.att_in = nn.ModuleList([nn.Linear(h, e) for _ in range(n)])
        self.att_out = nn.ModuleList([nn.Linear(e, h) for _ in range(n)])
        self.output = nn.Linear(e, tgt_vocab)

    def forward(self, src, src_lengths, tgt_in):
        r = math.sqrt(0.5)
        mask = (torch.arange(src.shape[1]).unsqueeze(0) >= src_lengths.unsqueeze(1)).unsqueeze(1)  # (N, 1, S)
        e = self.src_embed(src) + self.src_pos(torch.arange(src.shape[1]))
        h = self.enc_in(self.dropout(e)).transpose(1, 2)
        for conv in self.enc_convs:
            h = (F.glu(conv(self.dropout(h).masked_fill(mask, 0.0)), dim=1) + h) * r
        z = self.enc_out(h.transpose(1, 2)).masked_fill(mask.transpose(1, 2), 0.0)
        values, scale = (z + e) * r, src_lengths.float().sqrt().reshape(-1, 1, 1)
        g = self.tgt_embed(tgt_in) + self.tgt_pos(torch.arange(tgt_in.shape[1]))
        h = self.dec_in(self.dropout(g)).transpose(1, 2)
        for i, conv in enumerate(self.dec_convs):
            c = F.glu(conv(F.pad(self.dropout(h), (self.k - 1, 0))), dim=1).transpose(1, 2)
            d = (self.att_in[i](c) + g) * r
            a = F.softmax((d @ z.transpose(1, 2)).masked_fill(mask, float("-inf")), dim=-1)
            c = (c + self.att_out[i](a @ values * scale)) * r
            h = (c.transpose(1, 2) + h) * r
        return self.output(self.dropout(self.dec_out(h.transpose(1, 2))))


class Transformer(nn.Module):
    """Post-norm (or pre-norm) encoder-decoder with torch's own layers; output tied to the target
    embedding; sinusoidal positions."""

    def __init__(self, args, src_vocab, tgt_vocab, max_len=1024):
        super().__init__()
        from .text.translation import sinusoidal_positions

        d = self.d_model = args.d_model
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, d, padding_idx=0), nn.Embedding(tgt_vocab, d,
                                                                                                  padding_idx=0)
        for emb in (self.src_embed, self.tgt_embed):  # N(0, d^-1/2) as pyfastdl's
            nn.init.normal_(emb.weight, std=d ** -0.5)
        self.register_buffer("positions", torch.from_numpy(sinusoidal_positions(max_len, d)), persistent=False)
        self.dropout = nn.Dropout(args.dropout)
        kw = dict(dim_feedforward=args.d_ff, dropout=args.dropout, batch_first=True, norm_first=args.pre_norm)
        self.encoder = nn.ModuleList([nn.TransformerEncoderLayer(d, args.heads, **kw) for _ in range(args.layers)])
        self.decoder = nn.ModuleList([nn.TransformerDecoderLayer(d, args.heads, **kw) for _ in range(args.layers)])
        for module in self.modules():  # no dropout on the attention weights, as pyfastdl's (and the paper's)
            if isinstance(module, nn.MultiheadAttention):
                module.dropout = 0.0
        self.encoder_norm = nn.LayerNorm(d) if args.pre_norm else None
        self.decoder_norm = nn.LayerNorm(d) if args.pre_norm else None

    def _embed(self, emb, ids):
        return self.dropout(emb(ids) * math.sqrt(self.d_model) + self.positions[:ids.shape[1]])

    def forward(self, src, src_lengths, tgt_in):
        mask = torch.arange(src.shape[1]).unsqueeze(0) >= src_lengths.unsqueeze(1)
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, src_key_padding_mask=mask)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        y = self._embed(self.tgt_embed, tgt_in)
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1])
        for layer in self.decoder:
            y = layer(y, x, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=mask)
        if self.decoder_norm is not None:
            y = self.decoder_norm(y)
        return F.linear(y, self.tgt_embed.weight)
