"""Does concept discovery find parts and objects? ACE's concepts checked against shapes' exact masks.

    python benchmarks/concept_discovery.py outputs/DATE/TIME/checkpoints/last.ckpt
    python benchmarks/concept_discovery.py CHECKPOINT --images 200 --embeddings context patch

Runs ``insight.concept_discovery``'s measurement (``discover_concepts``: SLIC superpixels, k-means
per layer, TCAV through Captum) on held-out shapes images with a trained shapes checkpoint, at the
layers the view inspects by default, and prints per layer:

- concepts: coherent clusters kept; significant: those that matter to at least one class (TCAV);
  speak for their class: those whose TCAV score is significant and above random for the class most
  of their segments come from;
- class purity: the mean share of a concept's segments that come from its most common class, and
  the same for random sets of as many segments (chance);
- part concepts: concepts whose segments mostly lie on a part (not on the background), and their
  mean part purity (the share on their most common of the seven part kinds), against chance among
  the segments that lie on parts.

``--embeddings`` compares how a segment is embedded before clustering (purity only, no TCAV):
``context`` (the view's: the layer's map of the segment's own image, averaged over its pixels),
``patch`` (ACE's: the segment's bounding box, grey outside the segment, resized to the input) and
``in-place`` (the segment where it lies, grey everywhere else, not resized).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from layerscope.data.shapes import concepts, render_images_with_maps
from layerscope.inference.loading import load_classifier
from layerscope.insight import ace
from layerscope.insight.capture import trace_anatomy
from layerscope.insight.discovery import discover_concepts, part_concepts
from layerscope.insight.feature_vis import readable_layers
from layerscope.models.layers import inspection_mode, layer_hooks, layer_tag, named_layers
from layerscope.training.hardware import machine_line

GREY = 117  # ACE's fill value outside a segment


def isolated(images: torch.Tensor, segments: ace.Segments, resize: bool) -> torch.Tensor:
    """Each segment alone on grey: cut to its bounding box and resized (ACE), or in place."""
    size = images.shape[-1]
    out = torch.empty(len(segments), *images.shape[1:], dtype=torch.uint8)
    for row, (index, mask) in enumerate(zip(segments.image.tolist(), segments.masks, strict=True)):
        patch = torch.where(mask, images[index], torch.full_like(images[index], GREY))
        if resize:
            ys, xs = mask.nonzero(as_tuple=True)
            patch = patch[:, int(ys.min()):int(ys.max()) + 1, int(xs.min()):int(xs.max()) + 1]
            patch = F.interpolate(patch[None].float(), size=(size, size), mode="bilinear",
                                  align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        out[row] = patch
    return out


def isolated_embeddings(classifier, layers: list[int], patches: torch.Tensor, masks: torch.Tensor | None,
                        ) -> dict[int, torch.Tensor]:
    """Each patch's layer map averaged over the whole patch (resized) or over its segment (in place)."""
    model = classifier.model
    found: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
    for start in range(0, len(patches), 500):
        maps: dict[int, torch.Tensor] = {}

        def keep(index: int, output: torch.Tensor, maps: dict = maps) -> None:
            if index in layers:
                maps[index] = output.float()

        with inspection_mode(model), layer_hooks(named_layers(model), keep):
            model(classifier.to_batch(patches[start:start + 500]))
        for index, value in maps.items():
            if masks is None:
                found[index].append(value.mean(dim=(2, 3)))
            else:
                chunk = ace.Segments(torch.arange(len(value)), masks[start:start + 500],
                                     torch.zeros(len(value), dtype=torch.long))
                found[index].append(ace.pooled(value, chunk))
    return {i: torch.cat(v) for i, v in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint trained on shapes (32 px)")
    parser.add_argument("--images", type=int, default=200, help="held-out images segmented")
    parser.add_argument("--random-sets", type=int, default=50)
    parser.add_argument("--embeddings", nargs="+", default=["context", "patch", "in-place"],
                        choices=["context", "patch", "in-place"])
    args = parser.parse_args()
    classifier = load_classifier(args.checkpoint)
    model = classifier.model
    rows = torch.arange(args.images)
    images, labels, maps = render_images_with_maps(rows, classifier.image_size, 0, "test")
    masks = concepts(maps, labels)
    parts = masks.masks[:, [k for k, kind in enumerate(masks.kinds) if kind == "part"]]
    layers = readable_layers(trace_anatomy(model, classifier.to_batch(images[:1])))
    names = [name for name, _ in named_layers(model)]
    print(f"{machine_line()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{args.checkpoint}; "
          f"{args.images} held-out shapes images, layers {[layer_tag(i, names[i]) for i in layers]}")
    for embedding in args.embeddings:
        started = time.perf_counter()
        if embedding == "context":
            found = discover_concepts(model, classifier.to_batch, images, labels, layers, parts,
                                      random_sets=args.random_sets, class_count=len(classifier.classes))
            segments = found.segments
            members = {layer.index: [c.members for c in layer.concepts] for layer in found.layers}
            significant = {layer.index: layer.significant for layer in found.layers}
            # concepts whose TCAV score speaks for their own most common class
            own = {layer.index: int(sum(layer.scores.raises[k, c] for k, (c, _) in enumerate(layer.classes)))
                   for layer in found.layers if layer.scores is not None}
        else:
            segments = ace.superpixels(images)
            resize = embedding == "patch"
            patches = isolated(images, segments, resize)
            embedded = isolated_embeddings(classifier, layers, patches, None if resize else segments.masks)
            members = {i: [c.members for c in ace.discover(e, segments)] for i, e in embedded.items()}
            significant, own = {}, {}
        seconds = time.perf_counter() - started
        class_of = labels.numpy()[segments.image.numpy()]
        part_of = ace.part_labels(segments, parts)
        on_parts = np.flatnonzero(part_of > 0)
        print(f"\nembedding: {embedding}; {len(segments)} segments ({np.mean(part_of > 0):.0%} on parts); "
              f"{seconds:.1f} s")
        print("| layer | concepts | significant | speak for their class | class purity (chance) | "
              "part concepts | their part purity (chance) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for index in layers:
            found_here = members.get(index, [])
            if not found_here:
                print(f"| {layer_tag(index, names[index])} | 0 | | | | | |")
                continue
            size = max(len(m) for m in found_here)
            class_purity = np.mean([ace.purity(class_of, m)[1] for m in found_here])
            count, part_purity = part_concepts([ace.purity(part_of, m) for m in found_here])
            purity_text = "-" if part_purity is None else f"{part_purity:.0%}"
            chance_part = ace.chance_purity(part_of[on_parts], size)
            print(f"| {layer_tag(index, names[index])} | {len(found_here)} | {significant.get(index, '-')} | "
                  f"{own.get(index, '-')} | "
                  f"{class_purity:.0%} ({ace.chance_purity(class_of, size):.0%}) | {count} | "
                  f"{purity_text} ({chance_part:.0%}) |", flush=True)


if __name__ == "__main__":
    main()
