"""The keypoint prompts of PGVL's configs, in each dataset's keypoint order (``class_names``)."""

from __future__ import annotations

__all__ = ["PROMPTS"]

#: dataset -> one prompt per keypoint, as the released configs write them.
PROMPTS: dict[str, tuple[str, ...]] = {
    "mpii": ("right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle", "lower pelvis",
             "upper thorax", "upper neck", "upper head", "right wrist", "right elbow", "right shoulder",
             "left shoulder", "left elbow", "left wrist"),
    "crowdpose": ("left shoulder", "right shoulder", "left elbow", "right elbow", "left wrist", "right wrist",
                  "left hip", "right hip", "left knee", "right knee", "left ankle", "right ankle", "upper head",
                  "upper neck"),
    # COCO-17 order, descriptive phrases (context length 12). "lose" is the config's spelling of
    # "nose"; the released OCHuman weights were trained with it.
    "ochuman": ("lose at the center of the face", "left eye within the left orbit", "right eye within the right orbit",
                "left ear on the left side of the head", "right ear on the right side of the head",
                "left shoulder at upper arm root", "right shoulder at upper arm root", "left elbow at upper forearm",
                "right elbow at upper forearm", "left wrist at proximal hand", "right wrist at proximal hand",
                "left hip at lateral pelvis", "right hip at lateral pelvis", "left knee at lower thigh",
                "right knee at lower thigh", "left ankle at lower leg", "right ankle at lower leg"),
    "ap10k": ("left eye", "right eye", "nose", "neck", "tail root", "left shoulder", "left elbow", "left front paw",
              "right shoulder", "right elbow", "right front paw", "left hip", "left knee", "left back paw", "right hip",
              "right knee", "right back paw"),
    "animalpose": ("left eye", "right eye", "left ear base", "right ear base", "nose", "throat", "tail base", "withers",
                   "left front elbow", "right front elbow", "left back elbow", "right back elbow", "left front knee",
                   "right front knee", "left back knee", "right back knee", "left front paw", "right front paw",
                   "left back paw", "right back paw"),
    # Plain COCO-17 names (the synthetic people of the tiny preset).
    "coco": ("nose", "left eye", "right eye", "left ear", "right ear", "left shoulder", "right shoulder", "left elbow",
             "right elbow", "left wrist", "right wrist", "left hip", "right hip", "left knee", "right knee",
             "left ankle", "right ankle"),
}
